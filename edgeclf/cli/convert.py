"""``edgeclf convert``: a trained model to TFLite / ONNX / Edge TPU / TensorRT files, each parity-checked."""
from __future__ import annotations

import os
from typing import Any

import click

from edgeclf.artifact.formats import FORMAT_NAMES, IO_TYPES, QUANT_MODES
from edgeclf.cli.options import model_argument, model_options, out_option, unsafe_load_option


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
@click.option("--check", type=click.Path(exists=True, file_okay=False),
              help="Folder for the parity gate; class sub-folders named after the labels gate on accuracy (default: a run's test.npz, else the calibration images not used for int8 ranges).")
@click.option("--opset", type=click.IntRange(8, 21), default=17, show_default=True, help="ONNX opset.")
@click.option("--margin", type=click.FloatRange(0, 1, max_open=True), default=None,
              help="Source top-1 must lead its runner-up by this much probability for a flip to count (default 0.2).")
@click.option("--max-flips", type=click.FloatRange(0, 1), default=None,
              help="Largest flip rate among decisive images (default 0.05 fp32/fp16, 0.10 dynamic/int8).")
@click.option("--max-drop", type=click.FloatRange(0, 1), default=None,
              help="Largest accuracy drop on labelled check images, as a fraction (default 0.005 fp32/fp16, 0.01 int8).")
@click.option("--int8-fallback", type=click.Choice(("off", "auto")), default="off", show_default=True,
              help="auto: keep the fewest worst-quantised layers of a failing int8 TFLite file in float.")
@click.option("--keep-failed", is_flag=True, help="Keep files that fail or cannot be verified (still exits non-zero).")
@click.option("--allow-select-ops", is_flag=True, help="Allow TensorFlow (Flex) ops TFLite builtins lack.")
@click.option("--batch", default="1", show_default=True, type=click.Choice(["1", "0", "dynamic"]),
              help="Batch dimension of TFLite/ONNX files: 1, or 0/dynamic for any batch size (bench --batch).")
@out_option("converted", "Output folder.")
@model_options
@unsafe_load_option
def cmd(model: str, to: str, quant: str | None, io: str, calib: str | None, calib_samples: int, check: str | None,
        opset: int, margin: float | None, max_flips: float | None, max_drop: float | None, int8_fallback: str,
        keep_failed: bool, allow_select_ops: bool, batch: str, out: str,
        unsafe_load: bool, **kwargs: Any) -> None:
    """Convert MODEL (a training run folder, .keras, .h5 or SavedModel folder) for edge devices."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from edgeclf.conversion.pipeline import convert
    from edgeclf.cli.options import runtime_kwargs

    convert(model, to=to, quant=quant, io=io, calib=calib, calib_samples=calib_samples, check=check, opset=opset,
            out=out, margin=margin, max_flip_rate=max_flips, max_accuracy_drop=max_drop, int8_fallback=int8_fallback,
            keep_failed=keep_failed, allow_select_ops=allow_select_ops, batch=batch, unsafe_load=unsafe_load,
            **runtime_kwargs(kwargs))
