"""``edgeclf eval``: accuracy, top-5, per-class precision/recall/F1 and a confusion matrix of a model on a data set."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeclf.cli.options import device_options, json_option, model_argument, out_option, runtime_kwargs, runtime_options, \
    unsafe_load_option, write_json


@click.command("eval")
@model_argument()
@click.argument("data")
@click.option("--limit", type=click.IntRange(min=1), help="Score a stratified subset of this many images.")
@out_option(None, "Folder for report.json, confusion_matrix.json/.png (default: ./eval-<model name>).")
@json_option("the report")
@runtime_options
@device_options()
@unsafe_load_option
def cmd(model: str, data: str, limit: int | None, out: str | None, json_path: str | None, unsafe_load: bool,
        **kwargs: Any) -> None:
    """Evaluate MODEL (run folder, .keras/.h5, .tflite, .onnx) on DATA (class folders, a run's test.npz, or
    fashion_mnist / digits / mnist / cifar10)."""
    from edgeclf.evaluation.evaluate import evaluate
    from edgeclf.metrics import print_report

    path = Path(model)
    out = out or f"eval-{path.stem if path.is_file() else path.resolve().name}"
    report = evaluate(model, data, limit=limit, out=out, unsafe_load=unsafe_load, **runtime_kwargs(kwargs))
    if json_path:
        write_json(report, json_path)
    if json_path != "-":
        print_report(report, title=f"{path.name} on {data}")
        click.echo(f"report, confusion matrix: {out}/")
