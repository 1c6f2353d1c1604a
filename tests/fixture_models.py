"""The tiny models the tests run, made with plain TensorFlow / onnx (not edgeclf's converter), as a user's foreign
model would be; plus one copy carrying edgeclf metadata.

conftest.py builds them once per session. A runtime-only environment (no TensorFlow: Raspberry Pi OS with apt's
numpy/OpenCV, or the lowest allowed versions) cannot, so CI builds them beforehand with the full environment

    .venv/bin/python tests/fixture_models.py DIR

and runs the runtime tests with ``EDGECLF_TEST_MODELS=DIR`` (see .ci/runtime_envs.sh).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 32
CLASSES = ["cat", "dog", "bird", "fish"]
PREBUILT_ENV = "EDGECLF_TEST_MODELS"
# key -> file name in the models folder
FILES = {"float": "tiny_float.tflite", "uint8": "tiny_uint8.tflite", "int8": "tiny_int8.tflite",
         "onnx": "tiny.onnx", "logits": "tiny_logits.tflite", "nchw_onnx": "torchlike.onnx",
         "meta": "tiny.tflite", "labels": "labels.txt"}


def keras_model():
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


def _logits_tflite(model) -> bytes:
    """The same net and weights without the softmax."""
    import tensorflow as tf
    import tf_keras as keras
    logits = keras.models.clone_model(model)
    logits.set_weights(model.get_weights())
    logits.layers[-1].activation = keras.activations.linear
    return tf.lite.TFLiteConverter.from_keras_model(logits).convert()


COLOUR_W = np.array([[3, -1, -1, 0], [-1, 3, -1, 0], [-1, -1, 3, 0]], np.float32)  # channel x class
COLOUR_B = np.array([0, 0, 0, 0.5], np.float32)


def colour_classifier_onnx(path: Path, w: np.ndarray = COLOUR_W, b: np.ndarray = COLOUR_B) -> None:
    """A PyTorch-shaped classifier built with onnx.helper: float [N,3,8,8] RGB in, 4 logits out (no softmax),
    logit j = sum over channels c of mean(c) * w[c, j] + b[j]: saturated colours are clear answers, greys near-ties."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["pixels"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "w", "b"], ["logits"])],
        "nchw", [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(np.asarray(w, np.float32), "w"),
         numpy_helper.from_array(np.asarray(b, np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_models(d: Path, model=None) -> dict[str, Path]:
    """Write every fixture model into ``d`` (needs the [train] extra) and return ``load_models(d)``."""
    import tensorflow as tf
    import tf2onnx

    from edgeclf.artifact import Metadata, Preprocess, write_metadata

    d.mkdir(parents=True, exist_ok=True)
    model = model if model is not None else keras_model()
    for name, quant, io in [("float", "fp32", "float32"), ("uint8", "int8", "uint8"), ("int8", "int8", "int8")]:
        (d / FILES[name]).write_bytes(_to_tflite(model, quant, io))
    (d / FILES["logits"]).write_bytes(_logits_tflite(model))
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(d / FILES["onnx"]))
    colour_classifier_onnx(d / FILES["nchw_onnx"])
    (d / FILES["labels"]).write_text("\n".join(CLASSES) + "\n")
    # a float .tflite with edgeclf metadata (labels, mean/std 127.5, RGB, stretch) embedded
    meta = Metadata(labels=CLASSES, preprocess=Preprocess(input_size=(SIZE, SIZE), mean=127.5, std=127.5,
                                                          resize="stretch"), output="probabilities", source="tests")
    write_metadata(d / FILES["float"], meta, d / FILES["meta"])
    return load_models(d)


def load_models(d: Path) -> dict[str, Path]:
    """The fixture models of a folder made by ``build_models``; a missing file is one clear error."""
    out = {key: Path(d) / name for key, name in FILES.items()}
    missing = [p.name for p in out.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{d}: missing fixture model(s) {', '.join(missing)}; "
                                f"make them with: .venv/bin/python tests/fixture_models.py {d}")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/fixture_models.py DIR")
    for key, path in build_models(Path(sys.argv[1])).items():
        print(f"{key:10} {path} {path.stat().st_size} bytes")
