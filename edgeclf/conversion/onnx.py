"""Keras classifier -> ONNX (tf2onnx, explicit input signature, checked) and ONNX int8 (static QDQ).

TensorFlow >= 2.16 broke tf2onnx's guess of a Keras model's input signature (``_get_save_spec``), so the
signature is always given: one (1, H, W, C) float input named ``input``, or (N, H, W, C) with a dynamic batch.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.runtime.preprocess import normalised
from edgeclf.errors import ConversionError, first_line


def to_onnx(model: Any, shape: tuple[int, int, int], out: str | os.PathLike, opset: int = 17,
            source: str = "model", batch: int | None = 1) -> Path:
    """Write ``model`` as a checked ONNX file at ``out`` (NHWC float input ``input``; ``batch`` None: dynamic)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec((batch, *shape), tf.float32, name="input"),)
    try:
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=opset)
    except Exception as exc:  # tf2onnx raises bare ValueError/RuntimeError/KeyError for unsupported graphs
        raise ConversionError(f"{source}: ONNX export (tf2onnx, opset {opset}) failed: "
                              f"{type(exc).__name__}: {first_line(exc)}") from None
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx.checker.ValidationError, shape inference errors
        raise ConversionError(f"{source}: the exported ONNX model fails onnx.checker: {first_line(exc)}") from None
    onnx.save(proto, str(out))
    return Path(out)


class ImageReader:
    """ONNX Runtime's CalibrationDataReader over BGR images at the input size, normalised like the Keras model's input."""

    def __init__(self, images: np.ndarray, pre: Preprocess, input_name: str = "input") -> None:
        self._batches = normalised(images, pre)
        self._name = input_name
        self._it: Iterator[np.ndarray] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self._name: x[None]}

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_onnx(fp32: str | os.PathLike, out: str | os.PathLike, images: np.ndarray, pre: Preprocess) -> Path:
    """Static int8 quantisation (QDQ, per-channel weights) of ``fp32`` with the calibration images."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(str(fp32), str(out), ImageReader(images, pre), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return Path(out)


def to_fp16(fp32: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Half-precision weights and activations with float32 input and output, so it is fed like the fp32 file."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    onnx.save(convert_float_to_float16(onnx.load(str(fp32)), keep_io_types=True), str(out))
    return Path(out)
