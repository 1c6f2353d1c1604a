"""Calibration and check images for conversion, drawn through the model's own preprocessing.

Every image ends up as a prepared uint8 HxWxC array (``edgeclf.preprocess.prepare``: the same geometry and
colour order the Runtime uses), so int8 ranges and parity figures describe what the device will see.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .artifact import Preprocess
from .errors import DataError, ImageError
from .preprocess import InputEncoder, load_image, prepare

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")


def _pick(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` items, spread by a seeded shuffle (classes are often contiguous)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def images_from_dir(folder: str | os.PathLike, pre: Preprocess, limit: int | None = None) -> np.ndarray:
    """Up to ``limit`` images found under ``folder`` (recursively), prepared for the model."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES[:5])}, ...) in the folder")
    chosen = [files[i] for i in _pick(len(files), limit)]
    out, bad = [], []
    for f in chosen:
        try:
            out.append(prepare(load_image(f), pre))
        except ImageError as exc:
            bad.append(str(exc))
    if not out:
        raise DataError(f"{root}: none of the {len(chosen)} image files could be decoded (first: {bad[0]})")
    return np.stack(out)


def images_from_npz(path: str | os.PathLike, pre: Preprocess, limit: int | None = None) -> np.ndarray:
    """Images of a run's ``calib.npz``/``test.npz`` (RGB uint8, already at the input size) in the model's colour order."""
    p = Path(path)
    try:
        with np.load(p) as z:
            images = z["images"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{p}: unreadable calibration file ({type(exc).__name__}: {exc})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise DataError(f"{p}: expected non-empty uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    images = images[_pick(len(images), limit)]
    if tuple(images.shape[1:3]) != tuple(pre.input_size):
        return np.stack([prepare(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), pre) for im in images])
    if pre.color == "BGR":
        return np.ascontiguousarray(images[..., ::-1])
    if pre.color == "GRAY":
        return np.stack([cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[:, :, None] for im in images])
    return images


def random_images(pre: Preprocess, n: int = 32, seed: int = 0) -> np.ndarray:
    """Seeded smooth random images, for checking float conversions of a model that came without any images."""
    h, w = pre.input_size
    c = 1 if pre.color == "GRAY" else 3
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (n, max(2, h // 8), max(2, w // 8), c), dtype=np.uint8)
    return np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c) for im in small])


def normalised(images: np.ndarray, pre: Preprocess) -> np.ndarray:
    """Prepared uint8 images -> the float32 batch the Keras model takes ((p - mean) / std)."""
    encode = InputEncoder(pre, np.float32)
    return np.concatenate([encode(im) for im in images])


def representative(images: np.ndarray, pre: Preprocess) -> Iterator[list[np.ndarray]]:
    """TFLite's representative dataset: one normalised batch-of-one per image."""
    for x in normalised(images, pre):
        yield [x[None]]
