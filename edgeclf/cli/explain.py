"""``edgeclf explain``: a Grad-CAM heat map of a Keras model's decision, drawn over the image."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("explain")
@click.argument("model", type=click.Path(exists=True))
@click.argument("image", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", type=click.Path(dir_okay=False), default="cam.png", show_default=True, help="Output PNG.")
@click.option("--class", "class_name", help="Explain this class (label or index) instead of the top one.")
def cmd(model: str, image: str, out: str, class_name: str | None) -> None:
    """Grad-CAM of MODEL (run folder or .keras/.h5 with metadata.json beside it) on IMAGE."""
    import cv2

    from ..artifact import read_metadata
    from ..calibration import normalised
    from ..errors import InvalidModelError
    from ..fileio import atomic_write_bytes
    from ..gradcam import grad_cam, overlay
    from ..keras_io import load_model, model_file
    from ..preprocess import load_image, prepare

    folder = model_file(model).parent if Path(model).is_file() else Path(model)
    meta = read_metadata(folder) if (folder / "metadata.json").is_file() else None
    if meta is None:
        raise InvalidModelError(f"{model}: no metadata.json (labels, preprocessing) in {folder}; explain needs a run folder")
    keras_model = load_model(model)
    pre = meta.preprocess
    prepared = prepare(load_image(image), pre)
    index = None
    if class_name is not None:
        if class_name in meta.labels:
            index = meta.labels.index(class_name)
        elif class_name.isdigit() and int(class_name) < len(meta.labels):
            index = int(class_name)
        else:
            raise click.BadParameter(f"{class_name!r} is neither a label nor an index of {model}", param_hint="--class")
    cam, index, probs = grad_cam(keras_model, normalised(prepared[None], pre), index)
    to_rgb = {"RGB": None, "BGR": cv2.COLOR_BGR2RGB, "GRAY": cv2.COLOR_GRAY2RGB}[pre.color]
    rgb = prepared if to_rgb is None else cv2.cvtColor(prepared, to_rgb)
    ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(rgb, cam), cv2.COLOR_RGB2BGR))
    atomic_write_bytes(out, png.tobytes())
    click.echo(f"{meta.labels[index]} (p={probs[index]:.3f}) -> {out}")
