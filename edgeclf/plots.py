"""PNG plots: training curves (with phase boundaries) and a confusion matrix.

Figures are made with matplotlib's object API (``Figure``, no pyplot), so importing or calling edgeclf never
switches the process-wide backend of a user's notebook or GUI.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from edgeclf.fileio import atomic_path


def figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib ``Figure`` not registered with pyplot: nothing global changes, nothing to close."""
    from matplotlib.figure import Figure
    return Figure(figsize=figsize)


def training_curves(history: list[dict[str, Any]], target: str | os.PathLike) -> None:
    """Loss and accuracy per epoch, train and validation, with each phase shaded and named."""
    epochs = [row["epoch"] + 1 for row in history]
    fig = figure((11, 4))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-o"), (f"val_{metric}", "-s")):
            values = [row.get(key) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, ms=3, label=key)
        phases: list[tuple[str, int, int]] = []
        for row, e in zip(history, epochs):
            if phases and phases[-1][0] == row["phase"]:
                phases[-1] = (row["phase"], phases[-1][1], e)
            else:
                phases.append((row["phase"], e, e))
        for i, (name, first, last) in enumerate(phases):
            ax.axvspan(first - 0.5, last + 0.5, color=f"C{i % 10}", alpha=0.08)
            ax.text((first + last) / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom",
                    fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_png(fig, target)


def confusion_matrix(cm: Sequence[Sequence[int]], labels: Sequence[str], target: str | os.PathLike,
                     title: str = "Confusion matrix") -> None:
    """Row-normalised confusion matrix with counts in the cells."""
    cm = np.asarray(cm)
    k = len(labels)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(4.0, 0.5 * k + 2)
    fig = figure((size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_png(fig, target)


def save_png(fig: Any, target: str | os.PathLike, dpi: int = 110, **options: Any) -> None:
    """Write ``fig`` as a PNG atomically."""
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **options)
