"""The parity gate's runs: the Keras source's and a converted file's probabilities, and the file judged on them.

The converted side runs through ``Runtime.probabilities_resized``, the code that runs it on the device (colour,
input quantisation into the engine's buffer, output dequantisation), so a pass here means the deployed path agrees.
What counts as degradation and how it is bounded (decisive flips, accuracy drop, Clopper-Pearson) is
``edgeclf.evaluation.parity``, which ``bench --pick`` judges its candidates with too.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.evaluation.parity import Limits, Parity, judge
from edgeclf.runtime import Runtime
from edgeclf.runtime.outputs import to_probabilities
from edgeclf.runtime.preprocess import normalised


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


def check_parity(reference: np.ndarray, path: str | os.PathLike, images: np.ndarray, limits: Limits,
                 image_source: str, truth: np.ndarray | None = None, device: str = "cpu") -> Parity:
    """Run the file on ``images`` through the Runtime and judge it against ``reference`` (see ``judge``)."""
    return judge(reference, file_probabilities(path, images, device), limits, image_source, truth, device)
