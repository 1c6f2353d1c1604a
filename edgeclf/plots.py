"""PNG plots: training curves (with phase boundaries) and confusions (a matrix, or at many classes the
most-confused pairs and the lowest recalls).

Figures are made with matplotlib's object API (``Figure``, no pyplot), so importing or calling edgeclf never
switches the process-wide backend of a user's notebook or GUI.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Sequence

import numpy as np

from edgeclf.fileio import atomic_path

log = logging.getLogger("edgeclf")
LABEL_CHARS = 32  # longer class names are cut in tick labels (ImageNet's run to 90 characters)


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


def confusion(view: dict[str, Any], target: str | os.PathLike, title: str = "Confusions") -> bool:
    """Draw an ``edgeclf.metrics.confusion_view``; without matplotlib, one log line and False (plots are optional)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log.warning(f"{target}: plot skipped, matplotlib is not installed (pip install matplotlib)")
        return False
    if "matrix" in view:
        confusion_matrix(view["matrix"], view["labels"], target, title)
    else:
        confusion_summary(view, target, title)
    return True


def _short(name: str) -> str:
    return name if len(name) <= LABEL_CHARS else name[:LABEL_CHARS - 1] + "…"


def confusion_matrix(cm: Sequence[Sequence[int]], labels: Sequence[str], target: str | os.PathLike,
                     title: str = "Confusion matrix") -> None:
    """Row-normalised confusion matrix with counts in the cells (for a few dozen classes; the figure is capped)."""
    cm = np.asarray(cm)
    k = len(labels)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(max(4.0, 0.5 * k + 2), 18.0)
    fig = figure((size + 1, size))
    ax = fig.subplots()
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    names = [_short(n) for n in labels]
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i, j in zip(*np.nonzero(cm)):
        ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_png(fig, target)


def confusion_summary(view: dict[str, Any], target: str | os.PathLike, title: str = "Confusions") -> None:
    """Two bar charts for many classes: the most-confused (true -> predicted) pairs and the lowest recalls."""
    pairs, recall = view["pairs"], view["recall"]
    fig = figure((14, max(3.0, 0.25 * max(len(pairs), len(recall)) + 1.5)))
    left, right = fig.subplots(1, 2)
    left.barh([f"{_short(p['true'])} -> {_short(p['predicted'])}" for p in pairs][::-1],
              [p["count"] for p in pairs][::-1], color="C3")
    left.set_title(f"most-confused pairs ({len(pairs)} shown)", fontsize=10)
    left.set_xlabel("images")
    right.barh([_short(n) for n in recall][::-1], list(recall.values())[::-1], color="C0")
    right.set_xlim(0, 1)
    right.set_title(f"lowest recall: {len(recall)} of the {view['classes_in_data']} classes in the data", fontsize=10)
    right.set_xlabel("recall")
    for ax in (left, right):
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, target)


def save_png(fig: Any, target: str | os.PathLike, dpi: int = 110, **options: Any) -> None:
    """Write ``fig`` as a PNG atomically."""
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", **options)
