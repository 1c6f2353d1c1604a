"""``edgeclf eval``: accuracy, top-5, per-class precision/recall/F1 and a confusion matrix of a model on a data set."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgeclf.cli.options import device_options, model_options, runtime_kwargs, unsafe_load_option


@click.command("eval")
@click.argument("model", type=click.Path(exists=True))
@click.argument("data")
@click.option("--limit", type=click.IntRange(min=1), help="Score a stratified subset of this many images.")
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Folder for report.json, confusion_matrix.json/.png (default: ./eval-<model name>).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
@model_options
@device_options
@unsafe_load_option
def cmd(model: str, data: str, limit: int | None, out: str | None, as_json: bool, unsafe_load: bool,
        **kwargs: Any) -> None:
    """Evaluate MODEL (run folder, .keras/.h5, .tflite, .onnx) on DATA (class folders, a run's test.npz, or
    fashion_mnist / digits / mnist / cifar10)."""
    from edgeclf.evaluation.evaluate import evaluate
    from edgeclf.metrics import print_report

    path = Path(model)
    out = out or f"eval-{path.stem if path.is_file() else path.resolve().name}"
    report = evaluate(model, data, limit=limit, out=out, unsafe_load=unsafe_load, **runtime_kwargs(kwargs))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_report(report, title=f"{path.name} on {data}")
        click.echo(f"report, confusion matrix: {out}/")
