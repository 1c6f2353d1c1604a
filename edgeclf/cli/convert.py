"""``edgeclf convert``: a trained model to TFLite / ONNX / Edge TPU / TensorRT files, each parity-checked."""
from __future__ import annotations

import os
from typing import Any

import click

from edgeclf.artifact.formats import FORMAT_NAMES, IO_TYPES, QUANT_MODES
from edgeclf.cli.options import model_argument, model_options, out_option


def _names(valid: tuple[str, ...]) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None:
            return None
        for name in value.replace(" ", "").lower().split(","):
            if name not in valid:
                raise click.BadParameter(f"{name!r} is not one of {', '.join(valid)}")
        return value
    return callback


@click.command("convert")
@model_argument()
@click.option("--to", "to", default="tflite", show_default=True, callback=_names((*FORMAT_NAMES, "all")),
              help=f"Format(s), comma-separated: {', '.join(FORMAT_NAMES)} or all.")
@click.option("--quant", default=None, callback=_names(QUANT_MODES),
              help=f"Quantisation(s), comma-separated: {', '.join(QUANT_MODES)} (default: each format's own).")
@click.option("--io", type=click.Choice(IO_TYPES), default="uint8", show_default=True,
              help="Input/output type of int8 TFLite and Edge TPU models.")
@click.option("--calib", type=click.Path(exists=True, file_okay=False), help="Folder of calibration images (default: the run's calib.npz).")
@click.option("--calib-samples", type=click.IntRange(min=1), default=200, show_default=True, help="Calibration images used.")
@click.option("--check", type=click.Path(exists=True, file_okay=False), help="Folder of images for the parity check (default: the calibration images).")
@click.option("--opset", type=click.IntRange(8, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=None,
              help="Top-1 agreement every file needs (default 0.99 fp32/fp16, 0.95 dynamic/int8).")
@click.option("--keep-failed", is_flag=True, help="Keep files that fail the parity check (still exits non-zero).")
@click.option("--allow-select-ops", is_flag=True, help="Allow TensorFlow (Flex) ops TFLite builtins lack.")
@click.option("--batch", default="1", show_default=True, type=click.Choice(["1", "0", "dynamic"]),
              help="Batch dimension of TFLite/ONNX files: 1, or 0/dynamic for any batch size (bench --batch).")
@out_option("converted", "Output folder.")
@model_options
def cmd(model: str, to: str, quant: str | None, io: str, calib: str | None, calib_samples: int, check: str | None,
        opset: int, min_agreement: float | None, keep_failed: bool, allow_select_ops: bool, batch: str, out: str,
        **kwargs: Any) -> None:
    """Convert MODEL (a training run folder, .keras, .h5 or SavedModel folder) for edge devices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgeclf.conversion.pipeline import convert
    from edgeclf.cli.options import runtime_kwargs

    convert(model, to=to, quant=quant, io=io, calib=calib, calib_samples=calib_samples, check=check, opset=opset,
            out=out, thresholds=min_agreement, keep_failed=keep_failed, allow_select_ops=allow_select_ops,
            batch=batch, **runtime_kwargs(kwargs))
