"""The common in-memory form of every data set: RGB uint8 images (or image files) + int labels + class names."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.errors import DataError
from edgeclf.runtime.images import load_image
from edgeclf.runtime.preprocess import prepare


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
        out = np.empty((len(self), h, w, pre.channels), np.uint8)
        for i in range(len(self)):
            out[i] = prepare(self.image_bgr(i), pre)
        return out

    def counts(self) -> np.ndarray:
        """Images per class."""
        return np.bincount(self.labels, minlength=self.num_classes)


def folder_name(label: str) -> str:
    """The class-per-folder name for ``label``, the one rule for every folder edgeclf writes or matches: path
    separators, characters file systems refuse and leading dots become '_' (Fashion-MNIST's "T-shirt/top" is the
    folder "T-shirt_top"; a label ".." can never name a parent folder)."""
    name = "".join("_" if ch in '/\\:*?"<>|' or ord(ch) < 32 else ch for ch in label).strip()
    return ("_" + name[1:] if name.startswith(".") else name) or "_"


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


def class_map(data_classes: list[str], model_labels: list[str], source: str, by_position: bool = False) -> np.ndarray:
    """The model output index of each data class, the one rule for eval, bench and the demo: by folder-safe
    name; by position only when asked (prepared images, a built-in set) or when the model has no names of its
    own (labels "0".."N-1") and the counts match; otherwise an error naming the classes, never a guess."""
    unnamed = model_labels == [str(i) for i in range(len(model_labels))]
    if by_position or not model_labels or (unnamed and len(data_classes) == len(model_labels)):
        if model_labels and len(data_classes) > len(model_labels):
            raise DataError(f"{source}: {len(data_classes)} classes but the model has {len(model_labels)} outputs")
        return np.arange(len(data_classes))
    by_folder = {folder_name(label): i for i, label in enumerate(model_labels)}
    missing = [c for c in data_classes if folder_name(c) not in by_folder]
    if missing:
        shown = ", ".join(model_labels[:10]) + (", ..." if len(model_labels) > 10 else "")
        raise DataError(f"{source}: class folder(s) {', '.join(missing[:5])} are not among the model's "
                        f"{len(model_labels)} labels ({shown}); name the class folders after the labels "
                        "(or pass --labels)")
    return np.asarray([by_folder[folder_name(c)] for c in data_classes])
