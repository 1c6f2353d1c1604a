"""Make the test models that carry the standard TFLite metadata, written by Google's own tflite-support writer
(not by edgeclf), so the tests check edgeclf against files made the way TF Hub / Model Maker models are.

tflite-support 0.4.4 pins protobuf < 4, which TensorFlow 2.21 cannot share a venv with, hence two steps:

    .venv/bin/python tests/data/make_tflite_support_models.py models /tmp/tfs-models     # TensorFlow
    python3.11 -m venv /tmp/tfs && /tmp/tfs/bin/pip install tflite-support==0.4.4
    /tmp/tfs/bin/python tests/data/make_tflite_support_models.py metadata /tmp/tfs-models tests/data

Each model maps an 8x8 image to 4 classes by a fixed linear function of its mean R, G and B (softmax), so a
wrong colour order or normalisation changes the answer.
"""
from __future__ import annotations

import sys
from pathlib import Path

LABELS = ["reddish", "greenish", "bluish", "grey"]
# (file stem, input dtype, normalisation mean, std) -- per-channel ImageNet values for the float model
MODELS = [("float_imagenet_norm", "float32", [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
          ("uint8_quant", "uint8", [127.5], [127.5])]


def make_models(out: Path) -> None:
    import os
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    out.mkdir(parents=True, exist_ok=True)
    w = np.array([[3.0, -1.0, -1.0, 0.0], [-1.0, 3.0, -1.0, 0.0], [-1.0, -1.0, 3.0, 0.0]], np.float32)
    for stem, dtype, mean, std in MODELS:
        model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                                  keras.layers.Dense(4, activation="softmax")])
        model.layers[-1].set_weights([w, np.array([0, 0, 0, 0.5], np.float32)])
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if dtype == "uint8":
            rng = np.random.default_rng(0)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (  # solid colours: outputs span the whole 0..1 range
                [((np.ones((1, 8, 8, 3)) * rng.integers(0, 256, (1, 1, 1, 3)) - np.asarray(mean))
                  / np.asarray(std)).astype(np.float32)] for _ in range(100))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = converter.inference_output_type = tf.uint8
        (out / f"{stem}.tflite").write_bytes(converter.convert())


def add_metadata(src: Path, out: Path) -> None:
    from tflite_support.metadata_writers import image_classifier, writer_utils

    labels = src / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    for stem, _, mean, std in MODELS:
        writer = image_classifier.MetadataWriter.create_for_inference(
            writer_utils.load_file(str(src / f"{stem}.tflite")), input_norm_mean=mean, input_norm_std=std,
            label_file_paths=[str(labels)])
        writer_utils.save_file(writer.populate(), str(out / f"tflite_support_{stem}.tflite"))


if __name__ == "__main__":
    stage, *paths = sys.argv[1:]
    make_models(Path(paths[0])) if stage == "models" else add_metadata(Path(paths[0]), Path(paths[1]))
