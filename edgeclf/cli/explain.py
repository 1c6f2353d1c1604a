"""``edgeclf explain``: a Grad-CAM heat map of a Keras model's decision, drawn over the image."""
from __future__ import annotations

import click

from edgeclf.cli.options import model_argument, out_option, unsafe_load_option


@click.command("explain")
@model_argument()
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@out_option("cam.png", "Output PNG.", file=True)
@click.option("--class", "class_name", help="Explain this class (label or index) instead of the top one.")
@unsafe_load_option
def cmd(model: str, image: str, out: str, class_name: str | None, unsafe_load: bool) -> None:
    """Grad-CAM of MODEL (run folder or .keras/.h5 with metadata.json beside it) on IMAGE."""
    from edgeclf.training.gradcam import explain

    label, p = explain(model, image, out, class_name, unsafe_load=unsafe_load)
    click.echo(f"{label} (p={p:.3f}) -> {out}")
