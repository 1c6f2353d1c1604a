"""TensorRT: the static-shape ONNX an engine is built from, an int8 calibration cache and the trtexec command.

Engines are specific to the GPU and TensorRT version, so they are built on the Jetson itself
(``converters/onnx_to_tensorrt.sh`` or ONNX Runtime's TensorRT provider); edgeclf builds one here only
when ``trtexec`` is on PATH.
"""
from __future__ import annotations

import os
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.conversion.onnx import ImageReader
from edgeclf.errors import ConversionError
from edgeclf.fileio import atomic_write_text

TRTEXEC = "trtexec"
SCRIPT = "converters/onnx_to_tensorrt.sh"
CACHE_HEADER = "TRT-8601-EntropyCalibration2"   # TensorRT 8.6's header; JetPack's trtexec reads this layout


def trtexec_command(onnx: str | os.PathLike, engine: str | os.PathLike, precision: str = "fp16",
                    calib_cache: str | os.PathLike | None = None, workspace_mb: int = 1024,
                    trtexec: str = TRTEXEC) -> list[str]:
    """The trtexec argument list that builds ``engine`` from ``onnx`` at ``precision`` (fp32|fp16|int8)."""
    if precision not in ("fp32", "fp16", "int8"):
        raise ConversionError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    cmd = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{workspace_mb}M"]
    if precision == "fp16":
        cmd.append("--fp16")
    elif precision == "int8":
        if calib_cache is None:
            raise ConversionError("TensorRT int8 needs a calibration cache (edgeclf convert --to tensorrt --quant int8 writes one)")
        cmd += ["--int8", "--fp16", f"--calib={calib_cache}"]  # fp16 as the fallback for layers without int8
    return cmd


def calibration_ranges(onnx: str | os.PathLike, images: np.ndarray, pre: Preprocess) -> dict[str, float]:
    """Max |activation| of every tensor over the calibration images (ONNX Runtime's MinMax calibrator)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    with tempfile.TemporaryDirectory() as tmp:
        cal = create_calibrator(str(onnx), None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                calibrate_method=CalibrationMethod.MinMax)
        cal.collect_data(ImageReader(images, pre))
        data = cal.compute_data()
    ranges = {}
    for name, rng in data.items():
        lo, hi = rng.range_value
        ranges[name] = max(abs(float(np.min(lo))), abs(float(np.max(hi))))
    return ranges


def write_calibration_cache(ranges: dict[str, float], path: str | os.PathLike) -> Path:
    """TensorRT's text cache: one ``tensor: <big-endian float32 scale in hex>`` line, scale = amax / 127."""
    lines = [CACHE_HEADER]
    for name in sorted(ranges):
        scale = max(ranges[name], 1e-8) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    return atomic_write_text(path, "\n".join(lines) + "\n")


def find_trtexec() -> str | None:
    """Path of trtexec when on PATH (JetPack puts it in /usr/src/tensorrt/bin)."""
    return shutil.which(TRTEXEC) or (str(p) if (p := Path("/usr/src/tensorrt/bin/trtexec")).is_file() else None)
