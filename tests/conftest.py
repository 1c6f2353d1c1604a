"""Shared fixtures: tiny classifiers made with plain TensorFlow (not edgeclf), as a user's foreign model would be.

They are built once per session. TensorFlow is imported only inside the fixtures, so tests that must prove
the runtime is TensorFlow-free run in subprocesses.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 32
CLASSES = ["cat", "dog", "bird", "fish"]
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _models  # noqa: E402  (reference models and photos shared with the benchmarks)
PHOTOS = {"tabby, tabby cat": "chelsea.png", "espresso": "coffee.png", "missile": "rocket.jpg",
          "moped": "motorcycle_left.png"}  # ImageNet class -> scikit-image photo (Lite0 misreads only the cat)


def _keras_model():
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(CLASSES), activation="softmax")(x)
    return keras.Model(inp, out)


def _calibration(n: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return ((rng.integers(0, 256, (n, SIZE, SIZE, 3)).astype(np.float32) - 127.5) / 127.5)


def _to_tflite(model, quant: str, io: str = "float32") -> bytes:
    import tensorflow as tf
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if quant == "int8":
        calib = _calibration()
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calib)
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = conv.inference_output_type = {"uint8": tf.uint8, "int8": tf.int8}[io]
    return conv.convert()


@pytest.fixture(scope="session")
def keras_model():
    return _keras_model()


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory, keras_model) -> dict[str, Path]:
    """float / uint8-io int8 / int8-io int8 .tflite and an .onnx, none carrying edgeclf metadata."""
    d = tmp_path_factory.mktemp("foreign")
    out = {}
    for name, quant, io in [("float", "fp32", "float32"), ("uint8", "int8", "uint8"), ("int8", "int8", "int8")]:
        p = d / f"tiny_{name}.tflite"
        p.write_bytes(_to_tflite(keras_model, quant, io))
        out[name] = p
    import tensorflow as tf
    import tf2onnx
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="input"),)
    out["onnx"] = d / "tiny.onnx"
    tf2onnx.convert.from_keras(keras_model, input_signature=spec, opset=17, output_path=str(out["onnx"]))
    (d / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    out["labels"] = d / "labels.txt"
    return out


@pytest.fixture(scope="session")
def tiny_tflite(tmp_path_factory, foreign_models) -> Path:
    """A float .tflite with edgeclf metadata (labels, mean/std 127.5, RGB, stretch) embedded."""
    from edgeclf.artifact import Metadata, Preprocess, write_metadata
    meta = Metadata(labels=CLASSES, preprocess=Preprocess(input_size=(SIZE, SIZE), mean=127.5, std=127.5,
                                                          resize="stretch"), output="probabilities", source="tests")
    return write_metadata(foreign_models["float"], meta, tmp_path_factory.mktemp("meta") / "tiny.tflite")


@pytest.fixture(scope="session")
def sample_images() -> list[np.ndarray]:
    """A few BGR uint8 frames of different sizes and content."""
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)]
    grad = np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (90, 1))
    imgs.append(np.dstack([grad, grad[::-1], np.full_like(grad, 60)]))
    return imgs


@pytest.fixture(scope="session")
def lite0_tflite(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 with ImageNet weights (1000 classes) as an fp32 .tflite without metadata; built once."""
    return _models.lite0_tflite(tmp_path_factory.mktemp("lite0") / "efficientnet_lite0.tflite")


@pytest.fixture(scope="session")
def imagenet_labels(tmp_path_factory) -> Path:
    """The 1000 ImageNet class names, one a line (index 0 is "tench, Tinca tinca")."""
    return _models.imagenet_labels(tmp_path_factory.mktemp("imagenet") / "labels.txt")


@pytest.fixture(scope="session")
def lite0_converted(tmp_path_factory) -> dict:
    """The pretrained Lite0 converted once by ``edgeclf.convert`` to fp32 and int8 (uint8 I/O) .tflite, its int8
    ranges fitted on 40 photo crops and both files gated on 100 other crops; the parity and MediaPipe tests
    share it (an int8 calibration of Lite0 takes most of a minute)."""
    from edgeclf.conversion.pipeline import convert

    d = tmp_path_factory.mktemp("lite0-converted")
    model, labels, pre = _models.lite0_keras(d)
    calib, check = _models.photo_crops(d / "calib", 40, seed=0), _models.photo_crops(d / "check", 100, seed=1)
    results = convert(model, to="tflite", quant="fp32,int8", calib=calib, check=check, labels=labels,
                      mean=list(pre.mean), std=list(pre.std), out=d / "out", verbose=False)
    return {"dir": d, "model": model, "labels": labels, "pre": pre, "check": check,
            "results": {r.quant: r for r in results}}


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Real photos from scikit-image's wheel, one a class folder named after its ImageNet class."""
    import skimage

    from edgeclf.data import folder_name
    root = tmp_path_factory.mktemp("photos")
    for label, photo in PHOTOS.items():
        (root / folder_name(label)).mkdir()
        shutil.copy(Path(skimage.__file__).parent / "data" / photo, root / folder_name(label) / photo)
    return root
