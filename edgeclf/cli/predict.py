"""``edgeclf predict MODEL IMAGE...``: classify image files."""
from __future__ import annotations

from typing import Any

import click

from edgeclf.cli.options import device_options, json_option, model_argument, runtime_kwargs, runtime_options, \
    top_k_option, write_json


@click.command("predict")
@model_argument()
@click.argument("images", nargs=-1, required=True, type=click.Path())
@top_k_option()
@json_option("one object per image, one per line")
@runtime_options
@device_options()
def cmd(model: str, images: tuple[str, ...], top_k: int, json_path: str | None, **kwargs: Any) -> None:
    """Classify IMAGES with MODEL (.tflite or .onnx) and print the top classes."""
    from edgeclf.runtime import Runtime
    rt = Runtime(model, **runtime_kwargs(kwargs))
    results = [{"image": image, "predictions": [p.to_dict() for p in rt.predict(image, top_k=top_k)]}
               for image in images]
    if json_path:
        write_json(results, json_path, lines=True)
    if json_path == "-":
        return
    for result in results:
        click.echo(result["image"])
        for p in result["predictions"]:
            click.echo(f"  {p['score']:7.2%}  {p['label']} ({p['index']})")
