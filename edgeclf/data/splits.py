"""Stratified, seeded splits: train / validation / test, plus a calibration split kept apart for int8 conversion."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeclf.errors import DataError
from .dataset import Dataset


@dataclass
class Splits:
    """Four disjoint parts of one data set."""

    train: Dataset
    val: Dataset
    test: Dataset
    calib: Dataset


def _shares(n: int, fractions: list[float]) -> list[int]:
    """How many of ``n`` items each fraction gets (rounded, at least one for a non-zero fraction), leaving at
    least one for training."""
    counts = [max(1, int(round(n * f))) if f > 0 else 0 for f in fractions]
    while n - sum(counts) < 1 and sum(counts) > 0:
        counts[int(np.argmax(counts))] -= 1
    return counts


def split_indices(labels: np.ndarray, fractions: list[float], seed: int) -> list[np.ndarray]:
    """Per class, shuffle with ``seed`` and cut off each fraction in turn; the rest is returned first (train)."""
    if any(f < 0 for f in fractions) or sum(fractions) >= 1:
        raise DataError(f"split fractions must be >= 0 and sum to less than 1, got {fractions}")
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for k, count in enumerate(_shares(len(idx), fractions), start=1):
            parts[k].append(idx[start:start + count])
            start += count
        parts[0].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def split(ds: Dataset, val: float = 0.1, test: float = 0.1, calib: float = 0.05, seed: int = 0,
          calib_max: int | None = 500) -> Splits:
    """Split ``ds`` into disjoint stratified train/val/test/calib parts (calib capped at ``calib_max`` images)."""
    train_idx, val_idx, test_idx, calib_idx = split_indices(ds.labels, [val, test, calib], seed)
    if calib_max is not None and len(calib_idx) > calib_max:
        keep = stratified_subset(ds.labels[calib_idx], calib_max, seed)
        train_idx = np.sort(np.concatenate([train_idx, np.delete(calib_idx, keep)]))
        calib_idx = calib_idx[keep]
    if len(train_idx) == 0 or len(val_idx) == 0 or len(test_idx) == 0:
        raise DataError(f"{ds.source}: {len(ds)} images are too few to split into train/val/test")
    return Splits(ds.subset(train_idx), ds.subset(val_idx), ds.subset(test_idx), ds.subset(calib_idx))


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of about ``n`` items, drawn per class in proportion to the class sizes (seeded)."""
    if n >= len(labels):
        return np.arange(len(labels))
    _, picked = split_indices(labels, [n / len(labels)], seed)
    return picked
