"""Training-time augmentation on batches of float images (0..255): one random affine warp per image (rotation,
zoom, shift, shear), horizontal flip, brightness/contrast, and optional mixup / cutmix on one-hot labels."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass
class Augment:
    """Augmentation strengths; zero disables each. Angles in degrees, shifts/zoom as fractions of the size."""

    flip: bool = True
    rotation: float = 10.0
    zoom: float = 0.1
    shift: float = 0.1
    shear: float = 5.0
    brightness: float = 0.1
    contrast: float = 0.1
    mixup: float = 0.0      # Beta(a, a) concentration; 0 = off
    cutmix: float = 0.0     # probability of cutmix per batch; 0 = off

    @property
    def geometric(self) -> bool:
        return bool(self.rotation or self.zoom or self.shift or self.shear)


def _affine(tf: Any, aug: Augment, n: Any, h: Any, w: Any) -> Any:
    """Per-image 8-parameter projective transforms (output -> input mapping) about the image centre."""
    def uniform(limit: float) -> Any:
        return tf.random.uniform([n], -limit, limit)
    angle = uniform(math.radians(aug.rotation))
    shear = uniform(math.radians(aug.shear))
    scale = 1.0 + uniform(aug.zoom)
    tx, ty = uniform(aug.shift) * w, uniform(aug.shift) * h
    cos, sin = tf.cos(angle) / scale, tf.sin(angle) / scale
    # input = R(angle) * Shear * output / scale, centred
    a0, a1 = cos, -sin + cos * tf.tan(shear)
    b0, b1 = sin, cos + sin * tf.tan(shear)
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    a2 = cx - a0 * cx - a1 * cy - tx
    b2 = cy - b0 * cx - b1 * cy - ty
    zeros = tf.zeros([n])
    return tf.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)


def augment_batch(images: Any, labels: Any, aug: Augment) -> tuple[Any, Any]:
    """Augment a batch: ``images`` float32 (B,H,W,C) in 0..255, ``labels`` one-hot float32 (B,K)."""
    import tensorflow as tf

    shape = tf.shape(images)
    n, h, w = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    if aug.flip:
        images = tf.image.random_flip_left_right(images)
    if aug.geometric:
        images = tf.raw_ops.ImageProjectiveTransformV3(
            images=images, transforms=_affine(tf, aug, n, h, w), output_shape=shape[1:3], fill_value=0.0,
            interpolation="BILINEAR", fill_mode="REFLECT")
    if aug.brightness:
        images = images + tf.random.uniform([n, 1, 1, 1], -aug.brightness, aug.brightness) * 255.0
    if aug.contrast:
        mean = tf.reduce_mean(images, axis=[1, 2, 3], keepdims=True)
        images = (images - mean) * tf.random.uniform([n, 1, 1, 1], 1 - aug.contrast, 1 + aug.contrast) + mean
    images = tf.clip_by_value(images, 0.0, 255.0)
    if aug.mixup:
        images, labels = _mixup(tf, images, labels, aug.mixup)
    if aug.cutmix:
        images, labels = tf.cond(tf.random.uniform([]) < aug.cutmix,
                                 lambda: _cutmix(tf, images, labels), lambda: (images, labels))
    return images, labels


def _beta(tf: Any, a: float, n: Any) -> Any:
    x, y = tf.random.gamma([n], a), tf.random.gamma([n], a)
    return x / (x + y)


def _mixup(tf: Any, images: Any, labels: Any, alpha: float) -> tuple[Any, Any]:
    """Blend each image with a random partner of the batch by a Beta(alpha, alpha) weight; labels likewise."""
    n = tf.shape(images)[0]
    lam = _beta(tf, alpha, n)
    perm = tf.random.shuffle(tf.range(n))
    li = tf.reshape(lam, [-1, 1, 1, 1])
    ll = tf.reshape(lam, [-1, 1])
    return (li * images + (1 - li) * tf.gather(images, perm),
            ll * labels + (1 - ll) * tf.gather(labels, perm))


def _cutmix(tf: Any, images: Any, labels: Any) -> tuple[Any, Any]:
    """Paste one random box (area fraction ~ U(0,1)) from a shuffled partner; labels mixed by the pasted area."""
    shape = tf.shape(images)
    n, h, w = shape[0], shape[1], shape[2]
    perm = tf.random.shuffle(tf.range(n))
    cut = tf.sqrt(tf.random.uniform([]))
    ch = tf.cast(tf.cast(h, tf.float32) * cut, tf.int32)
    cw = tf.cast(tf.cast(w, tf.float32) * cut, tf.int32)
    y0 = tf.random.uniform([], 0, h - ch + 1, tf.int32)
    x0 = tf.random.uniform([], 0, w - cw + 1, tf.int32)
    rows = tf.logical_and(tf.range(h) >= y0, tf.range(h) < y0 + ch)
    cols = tf.logical_and(tf.range(w) >= x0, tf.range(w) < x0 + cw)
    mask = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), images.dtype)[None, :, :, None]
    area = tf.cast(ch * cw, tf.float32) / tf.cast(h * w, tf.float32)
    return (images * (1 - mask) + tf.gather(images, perm) * mask,
            labels * (1 - area) + tf.gather(labels, perm) * area)
