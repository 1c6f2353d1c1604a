"""The parity gate: the converted file must answer like its source model on the same images.

The converted side runs through ``Runtime.probabilities_resized``, the code that runs it on the device (colour,
input quantisation into the engine's buffer, output dequantisation), so a pass here means the deployed path agrees.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.runtime import Runtime
from edgeclf.runtime.outputs import to_probabilities
from edgeclf.runtime.preprocess import normalised

DEFAULT_THRESHOLDS = {"fp32": 0.99, "fp16": 0.99, "dynamic": 0.95, "int8": 0.95}


@dataclass
class Parity:
    """Agreement figures of one converted file against its source."""

    images: int
    image_source: str
    agreement: float          # fraction of images with the same top-1 class
    max_abs_diff: float       # over all probabilities of all images
    mean_abs_diff: float
    threshold: float
    passed: bool
    device: str = "cpu"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line with the figures, for error messages."""
        return (f"top-1 agreement {self.agreement:.4f} (needs >= {self.threshold}), max |dp| {self.max_abs_diff:.4f}, "
                f"mean |dp| {self.mean_abs_diff:.5f} on {self.images} {self.image_source} images")


def source_probabilities(model: Any, images: np.ndarray, pre: Preprocess, output: str = "auto") -> np.ndarray:
    """The Keras model's probabilities for BGR images at the input size (batched, inference mode)."""
    out = np.asarray(model.predict(normalised(images, pre), batch_size=32, verbose=0), dtype=np.float32)
    return to_probabilities(out, output)


def file_probabilities(path: str | os.PathLike, images: np.ndarray, device: str = "cpu", **runtime_kwargs: Any) -> np.ndarray:
    """A converted file's probabilities for the same images, through the Runtime's device path.

    ``runtime_kwargs`` (mean, std, input_size, ...) describe a file that carries no edgeclf metadata.
    """
    rt = Runtime(path, device=device, **runtime_kwargs)
    return np.stack([rt.probabilities_resized(im) for im in images])


def check_parity(reference: np.ndarray, path: str | os.PathLike, images: np.ndarray, threshold: float,
                 image_source: str, device: str = "cpu") -> Parity:
    """Compare ``reference`` probabilities with the file's on ``images``; ``passed`` says if it meets ``threshold``."""
    got = file_probabilities(path, images, device)
    diff = np.abs(got - reference)
    agreement = float(np.mean(got.argmax(axis=-1) == reference.argmax(axis=-1)))
    return Parity(len(images), image_source, round(agreement, 6), round(float(diff.max()), 6),
                  round(float(diff.mean()), 6), threshold, agreement >= threshold, device)
