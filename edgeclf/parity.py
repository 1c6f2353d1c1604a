"""The parity gate: the converted file must answer like its source model on the same prepared images.

The converted side runs through ``edgeclf.Runtime`` (the code that will run it on the device, including
its input quantisation and output dequantisation), so a pass here means the deployed path agrees.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .artifact import Preprocess
from .calibration import normalised
from .preprocess import InputEncoder

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


def _softmax_if_logits(p: np.ndarray, kind: str) -> np.ndarray:
    looks_prob = p.min() >= 0 and np.allclose(p.sum(axis=-1), 1.0, atol=0.02)
    if kind == "logits" or (kind == "auto" and not looks_prob):
        e = np.exp(p - p.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return p


def source_probabilities(model: Any, images: np.ndarray, pre: Preprocess, output: str = "auto") -> np.ndarray:
    """The Keras model's probabilities for prepared uint8 images (batched, inference mode)."""
    x = normalised(images, pre)
    out = np.asarray(model.predict(x, batch_size=32, verbose=0), dtype=np.float32)
    return _softmax_if_logits(out, output)


def file_probabilities(path: str | os.PathLike, images: np.ndarray, device: str = "cpu", **runtime_kwargs: Any) -> np.ndarray:
    """A converted file's probabilities for the same prepared images, through ``Runtime``.

    ``runtime_kwargs`` (mean, std, input_size, ...) describe a file that carries no edgeclf metadata.
    """
    from .runtime import Runtime

    rt = Runtime(path, device=device, **runtime_kwargs)
    encode = InputEncoder(rt.preprocess_spec, rt.input_dtype, rt.input_spec.scale, rt.input_spec.zero_point)
    return np.concatenate([rt.scores(rt.infer(encode(im))[0]) for im in images])


def check_parity(reference: np.ndarray, path: str | os.PathLike, images: np.ndarray, threshold: float,
                 image_source: str, device: str = "cpu") -> Parity:
    """Compare ``reference`` probabilities with the file's on ``images``; ``passed`` says if it meets ``threshold``."""
    got = file_probabilities(path, images, device)
    diff = np.abs(got - reference)
    agreement = float(np.mean(got.argmax(axis=-1) == reference.argmax(axis=-1)))
    return Parity(len(images), image_source, round(agreement, 6), round(float(diff.max()), 6),
                  round(float(diff.mean()), 6), threshold, agreement >= threshold, device)
