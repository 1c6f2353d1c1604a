"""The common in-memory form of every data set: RGB uint8 images (or image files) + int labels + class names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..artifact import Preprocess
from ..preprocess import load_image, prepare


@dataclass
class Dataset:
    """Labelled images: ``images`` (N,H,W,3 uint8 RGB) for built-in sets, ``paths`` for folders (decoded lazily)."""

    class_names: list[str]
    labels: np.ndarray
    images: np.ndarray | None = None
    paths: list[Path] | None = None
    source: str = ""
    skipped: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if (self.images is None) == (self.paths is None):
            raise ValueError("a Dataset holds exactly one of images and paths")
        if len(self.labels) != (len(self.images) if self.images is not None else len(self.paths)):
            raise ValueError("labels and images differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices: np.ndarray) -> "Dataset":
        """The images at ``indices`` (same class names)."""
        idx = np.asarray(indices, dtype=np.int64)
        return Dataset(self.class_names, self.labels[idx],
                       images=None if self.images is None else self.images[idx],
                       paths=None if self.paths is None else [self.paths[i] for i in idx], source=self.source)

    def image_bgr(self, i: int) -> np.ndarray:
        """Image ``i`` as BGR uint8 (the convention of ``edgeclf.preprocess``)."""
        if self.images is not None:
            return cv2.cvtColor(self.images[i], cv2.COLOR_RGB2BGR)
        return load_image(self.paths[i])

    def prepared(self, pre: Preprocess) -> np.ndarray:
        """All images resized exactly as the Runtime does (``prepare``): N,H,W,C uint8 in the model's colour order."""
        h, w = pre.input_size
        channels = 1 if pre.color == "GRAY" else 3
        out = np.empty((len(self), h, w, channels), np.uint8)
        for i in range(len(self)):
            out[i] = prepare(self.image_bgr(i), pre)
        return out

    def counts(self) -> np.ndarray:
        """Images per class."""
        return np.bincount(self.labels, minlength=self.num_classes)


def folder_name(label: str) -> str:
    """The class-per-folder name for ``label``: path separators and characters file systems refuse become '_'
    (Fashion-MNIST's "T-shirt/top" is the folder "T-shirt_top"); matching folders to labels uses the same rule."""
    return "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in label).strip() or "_"


def to_rgb_uint8(images: np.ndarray) -> np.ndarray:
    """N,H,W (grey) or N,H,W,1|3 images of any numeric range 0..255 as N,H,W,3 uint8."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.rint(images), 0, 255).astype(np.uint8)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return np.ascontiguousarray(images)
