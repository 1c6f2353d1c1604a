"""What a classifier's output vector means: the one rule that tells probabilities from logits.

Runtime, the parity gate and conversion all decide with ``looks_like_probabilities``, so a model is never read
as probabilities in one place and as logits in another.
"""
from __future__ import annotations

import numpy as np

SUM_TOLERANCE = 0.02  # float rounding of a softmax row


def softmax(x: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(values: np.ndarray, quant_scale: float = 0.0) -> bool:
    """Non-negative rows summing to 1; a quantised output may miss by one quantisation step per class."""
    slack = SUM_TOLERANCE + quant_scale * values.shape[-1]
    return bool(values.min() >= 0 and np.all(np.abs(values.sum(axis=-1) - 1) < slack))


def to_probabilities(values: np.ndarray, kind: str, quant_scale: float = 0.0) -> np.ndarray:
    """``values`` as probabilities: softmax for logits, as they are for probabilities, judged for ``auto``."""
    if kind == "auto":
        kind = "probabilities" if looks_like_probabilities(values, quant_scale) else "logits"
    return softmax(values) if kind == "logits" else values
