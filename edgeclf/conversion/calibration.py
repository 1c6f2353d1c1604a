"""Calibration and check images for conversion, fitted to the model's input the way the Runtime fits them.

Every image ends up as a BGR uint8 array at the input size (``Runtime.resized``'s output), so int8 ranges
are fitted to, and parity is judged on, exactly the pixels the device will encode.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.errors import DataError, ImageError
from edgeclf.runtime.images import IMAGE_SUFFIXES, load_image
from edgeclf.runtime.preprocess import normalised, resize_geometry, to_bgr


def _pick(n: int, limit: int | None, seed: int = 0) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` items, spread by a seeded shuffle (classes are often contiguous)."""
    if limit is None or n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:limit])


def images_from_dir(folder: str | os.PathLike, pre: Preprocess, limit: int | None = None) -> np.ndarray:
    """Up to ``limit`` images found under ``folder`` (recursively), fitted to the input size."""
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
            out.append(resize_geometry(load_image(f), pre))
        except ImageError as exc:
            bad.append(str(exc))
    if not out:
        raise DataError(f"{root}: none of the {len(chosen)} image files could be decoded (first: {bad[0]})")
    return np.stack(out)


def images_from_npz(path: str | os.PathLike, pre: Preprocess, limit: int | None = None) -> np.ndarray:
    """Images of a run's ``calib.npz``/``test.npz`` (RGB uint8) as BGR at the input size."""
    p = Path(path)
    try:
        with np.load(p) as z:
            images = z["images"]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{p}: unreadable calibration file ({type(exc).__name__}: {exc})") from None
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8 or not len(images):
        raise DataError(f"{p}: expected non-empty uint8 images (N, H, W, 3), got {images.dtype} {images.shape}")
    bgr = np.ascontiguousarray(images[_pick(len(images), limit)][..., ::-1])
    if tuple(bgr.shape[1:3]) == tuple(pre.input_size):  # written by training at the input size already
        return bgr
    return np.stack([resize_geometry(im, pre) for im in bgr])


def random_images(pre: Preprocess, n: int = 32, seed: int = 0) -> np.ndarray:
    """Seeded smooth random BGR images, for checking float conversions of a model that came without any images."""
    h, w = pre.input_size
    small = np.random.default_rng(seed).integers(0, 256, (n, max(2, h // 8), max(2, w // 8), 3), dtype=np.uint8)
    return np.stack([to_bgr(cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)) for im in small])


def representative(images: np.ndarray, pre: Preprocess) -> Iterator[list[np.ndarray]]:
    """TFLite's representative dataset: one normalised batch-of-one per image."""
    for x in normalised(images, pre):
        yield [x[None]]
