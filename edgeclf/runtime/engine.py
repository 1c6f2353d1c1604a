"""The surface every inference engine adapter offers (pycoral-style): tensors, an input buffer, ``invoke``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``-1`` for dynamic dims), numpy dtype and quantisation (scale 0 = not quantised)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0


class Engine(Protocol):
    """One loaded model on one device. Like the interpreter under it, it serves one thread at a time."""

    name: str                        # engine, version and the delegate / provider actually in use
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    records: dict[str, bytes | str]  # the file's named metadata entries, as stored
    output_kind: str | None          # what the graph says its output is ("probabilities"/"logits"), None = unknown

    def input_buffer(self, shape: Sequence[int]) -> np.ndarray:
        """The first item of input 0, to be written in place for the next ``invoke``; do not keep it after."""

    def invoke(self) -> list[np.ndarray]:
        """Run on what was written into ``input_buffer``; the raw outputs."""

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Set a whole input tensor (any batch size the model allows) and run."""
