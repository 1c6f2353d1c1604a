"""``edgeclf predict MODEL IMAGE...``: classify image files."""
from __future__ import annotations

import json
from typing import Any

import click

from edgeclf.cli.options import device_options, model_options, runtime_kwargs


@click.command("predict")
@click.argument("model", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--top-k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image.")
@model_options
@device_options
def cmd(model: str, images: tuple[str, ...], top_k: int, as_json: bool, **kwargs: Any) -> None:
    """Classify IMAGES with MODEL (.tflite or .onnx) and print the top classes."""
    from edgeclf.runtime import Runtime
    rt = Runtime(model, **runtime_kwargs(kwargs))
    for image in images:
        preds = rt.predict(image, top_k=top_k)
        if as_json:
            click.echo(json.dumps({"image": image, "predictions": [p.to_dict() for p in preds]}))
        else:
            click.echo(image)
            for p in preds:
                click.echo(f"  {p.score:7.2%}  {p.label} ({p.index})")
