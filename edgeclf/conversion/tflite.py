"""Keras classifier -> TFLite flatbuffer, in the four quantisation modes TFLite defines.

The graph is traced with a static (1, H, W, C) input, as the Edge TPU compiler and most delegates need, or a
dynamic batch dimension (``batch=None``) for batched throughput on CPUs and GPUs.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from typing import Any, Iterator

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.conversion.calibration import representative
from edgeclf.errors import ConversionError, first_line


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to a scratch file: the MLIR converter dumps pages of diagnostics there itself."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _unsupported_ops_error(message: str, path: str, select_allowed: bool) -> ConversionError:
    ops = ", ".join(sorted(set(re.findall(r"'tf\.(\w+)' op", message)))) or "see the TensorFlow converter log"
    if select_allowed:
        return ConversionError(f"{path}: TFLite cannot run these TensorFlow ops, not even as TF Select ops: {ops}")
    return ConversionError(f"{path}: the model uses TensorFlow ops that TFLite builtins lack ({ops}); "
                           "pass --allow-select-ops to embed them (the device then needs the TF Select/Flex runtime)")


def concrete_function(model: Any, shape: tuple[int, int, int], batch: int | None = 1) -> Any:
    """The model's inference function traced for one float input named ``input`` (``batch`` None: dynamic)."""
    import tensorflow as tf

    spec = tf.TensorSpec((batch, *shape), tf.float32, name="input")
    return tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)


def variables_holder(model: Any) -> Any:
    """A bare ``tf.Module`` holding the model's variables: what the converter saves beside the traced function.
    Given the Keras model itself, it saves the whole model and traces every layer's call on the way (on a QAT
    EfficientNet-Lite0, over 4x the conversion time for the same bytes: benchmarks/convert_time.py)."""
    import tensorflow as tf

    holder = tf.Module()
    holder.kept = list(model.variables)
    return holder


def tflite_converter(model: Any, shape: tuple[int, int, int], quant: str, io: str = "uint8",
                     calib: np.ndarray | None = None, pre: Preprocess | None = None, qat: bool = False,
                     allow_select_ops: bool = False, source: str = "model", batch: int | None = 1) -> Any:
    """A ``TFLiteConverter`` set up for ``quant`` (fp32|fp16|dynamic|int8); int8 uses ``calib`` images unless ``qat``."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_concrete_functions([concrete_function(model, shape, batch)],
                                                         variables_holder(model))
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quant == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif quant == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quant == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if not qat:  # a QAT model carries its learned ranges in its fake-quant ops instead
            if calib is None or pre is None:
                raise ConversionError(f"{source}: int8 needs calibration images (--calib DIR or a run's calib.npz)")
            conv.representative_dataset = lambda: representative(calib, pre)
            ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if io != "float32":
            conv.inference_input_type = conv.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8}[io]
    if allow_select_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    conv.target_spec.supported_ops = ops
    return conv


def to_tflite(model: Any, shape: tuple[int, int, int], quant: str, io: str = "uint8",
              calib: np.ndarray | None = None, pre: Preprocess | None = None, qat: bool = False,
              allow_select_ops: bool = False, source: str = "model", batch: int | None = 1) -> bytes:
    """Convert ``model`` with ``quant`` (fp32|fp16|dynamic|int8); int8 uses ``calib`` images unless ``qat``."""
    conv = tflite_converter(model, shape, quant, io, calib, pre, qat, allow_select_ops, source, batch)
    try:
        with native_stderr_silenced():
            return conv.convert()
    except Exception as exc:  # the converter wraps MLIR failures in several exception types
        msg = str(exc)
        if "neither a custom op nor a flex op" in msg or "ERROR_NEEDS_FLEX_OPS" in msg:
            raise _unsupported_ops_error(msg, source, allow_select_ops) from None
        first = next((ln.strip()[:300] for ln in msg.splitlines() if "error" in ln.lower()), first_line(exc))
        raise ConversionError(f"{source}: TFLite {quant} conversion failed: {first}") from None
