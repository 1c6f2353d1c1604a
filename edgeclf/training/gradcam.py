"""Grad-CAM: where in the image a Keras classifier looked for its decision (gradient-weighted last conv maps)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edgeclf.artifact import read_metadata
from edgeclf.errors import EdgeclfError, InvalidModelError
from edgeclf.fileio import atomic_write_bytes
from edgeclf.runtime.images import load_image
from edgeclf.runtime.preprocess import normalised, resize_geometry, to_bgr
from edgeclf.training.keras_io import load_model, model_file


def last_conv_layer(model: Any) -> Any:
    """The last layer with a 4-D (spatial) output: the feature maps the classifier head pools."""
    for layer in reversed(model.layers):
        shape = getattr(layer, "output_shape", None)
        if isinstance(shape, tuple) and len(shape) == 4:
            return layer
    raise InvalidModelError(f"{model.name}: no layer with a spatial (4-D) output to explain")


def grad_cam(model: Any, batch: np.ndarray, class_index: int | None = None) -> tuple[np.ndarray, int, np.ndarray]:
    """Heat map (H', W') in 0..1 for ``class_index`` (default: the top class) on one normalised input batch,
    plus that class and the probability vector."""
    import tensorflow as tf
    import tf_keras as keras

    layer = last_conv_layer(model)
    probe = keras.Model(model.inputs, [layer.output, model.outputs[0]])
    with tf.GradientTape() as tape:
        maps, probs = probe(tf.convert_to_tensor(batch, tf.float32), training=False)
        index = int(tf.argmax(probs[0])) if class_index is None else int(class_index)
        score = probs[:, index]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2))                       # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(maps * weights[:, None, None, :], axis=-1))[0].numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam, index, probs[0].numpy()


def overlay(image_rgb: np.ndarray, cam: np.ndarray, alpha: float = 0.45, min_side: int = 224) -> np.ndarray:
    """The heat map (JET colours) blended over the model-input image, enlarged to at least ``min_side``; RGB uint8."""
    h, w = image_rgb.shape[:2]
    scale = max(1.0, min_side / min(h, w))
    size = (round(w * scale), round(h * scale))
    base = cv2.resize(image_rgb, size, interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    heat = cv2.applyColorMap((cv2.resize(cam, size, interpolation=cv2.INTER_CUBIC).clip(0, 1) * 255).astype(np.uint8),
                             cv2.COLORMAP_JET)
    return cv2.addWeighted(base, 1 - alpha, cv2.cvtColor(heat, cv2.COLOR_BGR2RGB), alpha, 0)


def _class_index(class_name: str | None, labels: list[str], model: str) -> int | None:
    if class_name is None:
        return None
    if class_name in labels:
        return labels.index(class_name)
    if class_name.isdigit() and int(class_name) < len(labels):
        return int(class_name)
    raise EdgeclfError(f"{class_name!r} is neither a label nor an index of {model}")


def explain(model: str | os.PathLike, image: str | os.PathLike | np.ndarray, out: str | os.PathLike,
            class_name: str | None = None, unsafe_load: bool = False) -> tuple[str, float]:
    """Grad-CAM of a run's (or a Keras file's with metadata.json beside it) decision on ``image`` (a path or BGR
    pixels), drawn over the model-input image as a PNG at ``out``; returns the explained label and probability.
    ``unsafe_load``: see ``keras_io.load_model``."""
    folder = model_file(model).parent if Path(model).is_file() else Path(model)
    meta = read_metadata(folder) if (folder / "metadata.json").is_file() else None
    if meta is None:
        raise InvalidModelError(f"{model}: no metadata.json (labels, preprocessing) in {folder}; "
                                "explain needs a run folder")
    pixels = load_image(image) if isinstance(image, (str, os.PathLike)) else image
    sized = resize_geometry(to_bgr(pixels), meta.preprocess)
    index = _class_index(class_name, meta.labels, str(model))
    cam, index, probs = grad_cam(load_model(model, unsafe_load), normalised(sized[None], meta.preprocess), index)
    heat = overlay(cv2.cvtColor(sized, cv2.COLOR_BGR2RGB), cam)
    ok, png = cv2.imencode(".png", cv2.cvtColor(heat, cv2.COLOR_RGB2BGR))
    atomic_write_bytes(out, png.tobytes())
    return meta.labels[index], float(probs[index])
