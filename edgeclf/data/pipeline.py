"""tf.data input pipelines: decode + resize each image exactly as the Runtime does (``prepare``, in parallel),
cache the uint8 result, then batch, augment (training only), normalise with the model's mean/std and prefetch."""
from __future__ import annotations

from typing import Any

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.runtime.images import load_image
from edgeclf.runtime.preprocess import prepare
from .augment import Augment, augment_batch
from .dataset import Dataset


def _prepared_source(tf: Any, ds: Dataset, pre: Preprocess) -> Any:
    """A tf.data dataset of (uint8 prepared image, label), decoded/resized in parallel by OpenCV."""
    h, w = pre.input_size
    c = 1 if pre.color == "GRAY" else 3
    if ds.paths is not None:
        keys = tf.data.Dataset.from_tensor_slices([str(p) for p in ds.paths])

        def load(key: Any) -> np.ndarray:
            return prepare(load_image(key.decode()), pre)
    else:
        keys = tf.data.Dataset.range(len(ds))
        images = ds.images

        def load(key: Any) -> np.ndarray:
            return prepare(images[int(key)][..., ::-1], pre)

    def decode(key: Any, label: Any) -> tuple[Any, Any]:
        img = tf.numpy_function(load, [key], tf.uint8, stateful=False)
        return tf.ensure_shape(img, (h, w, c)), label

    labels = tf.data.Dataset.from_tensor_slices(ds.labels)
    return tf.data.Dataset.zip((keys, labels)).map(decode, num_parallel_calls=tf.data.AUTOTUNE)


def make_pipeline(ds: Dataset, pre: Preprocess, batch_size: int, training: bool = False,
                  augment: Augment | None = None, seed: int = 0, cache: bool = True) -> Any:
    """Batches of (float32 images normalised by ``pre``'s mean/std, one-hot float32 labels)."""
    import tensorflow as tf

    num_classes = ds.num_classes
    mean = tf.constant(np.asarray(pre.mean, np.float32))
    std = tf.constant(np.asarray(pre.std, np.float32))
    data = _prepared_source(tf, ds, pre)
    if cache:
        data = data.cache()
    if training:
        data = data.shuffle(min(len(ds), 10_000), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=False)

    def finish(images: Any, labels: Any) -> tuple[Any, Any]:
        images = tf.cast(images, tf.float32)
        onehot = tf.one_hot(labels, num_classes, dtype=tf.float32)
        if training and augment is not None:
            images, onehot = augment_batch(images, onehot, augment)
        return (images - mean) / std, onehot

    return data.map(finish, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
