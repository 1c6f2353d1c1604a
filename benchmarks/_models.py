"""Reference models for the benchmarks, built with plain TensorFlow (as a user's own model would be)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _mobilenet_v2(size: int, alpha: float):
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    return keras.applications.MobileNetV2(input_shape=(size, size, 3), alpha=alpha, weights=None, classes=1000)


def mobilenet_v2_tflite(out: Path, size: int = 224, quant: str = "int8", alpha: float = 1.0) -> Path:
    """MobileNetV2 (random weights: latency does not depend on them) as .tflite, int8 with uint8 I/O or float."""
    if out.exists():
        return out
    import tensorflow as tf
    model = _mobilenet_v2(size, alpha)
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        rng = np.random.default_rng(0)
        calib = rng.uniform(-1, 1, (16, size, size, 3)).astype(np.float32)
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = tf.uint8
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(conv.convert())
    return out


def mobilenet_v2_onnx(out: Path, size: int = 224, alpha: float = 1.0, opset: int = 17) -> Path:
    """The same MobileNetV2 as a float .onnx (tf2onnx, dynamic batch), as a user's own export would be."""
    if out.exists():
        return out
    import tensorflow as tf
    import tf2onnx

    from edgeclf.fileio import atomic_path
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="input"),)
    with atomic_path(out) as tmp:
        tf2onnx.convert.from_keras(_mobilenet_v2(size, alpha), input_signature=spec, opset=opset, output_path=str(tmp))
    return out
