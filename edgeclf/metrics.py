"""Classification metrics from labels and score vectors: accuracy, top-5, per-class precision/recall/F1,
macro and weighted averages, and the confusions. Numpy only, so eval/bench need no TensorFlow.

What a report keeps grows with the data, not with the square of the model's class count: per-class figures
cover the classes in the data or predicted, and the confusion matrix is kept as sparse counts of the
(true, predicted) pairs seen. A dense matrix is made only for a few dozen classes, to draw.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

DENSE_CLASSES = 30  # up to this many classes a confusion plot is the whole matrix, counts in the cells
TABLE_ROWS = 20  # classes listed in terminal and report tables, most images first
PAIRS_SHOWN = 20  # most-confused pairs in the summary view of many classes
RECALLS_SHOWN = 40  # lowest per-class recalls in that view


def classification_report(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of ``scores`` (N, K) against integer ``labels`` (N,); JSON-serialisable, O(N + K) in size."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores)
    n, k = len(labels), len(class_names)
    if scores.ndim != 2 or scores.shape != (n, k):
        raise ValueError(f"scores must be (N, {k}) for N={n} labels, got {scores.shape}")
    pred = scores.argmax(1)
    top = min(5, k)
    rank = (scores > scores[np.arange(n), labels][:, None]).sum(1)  # classes scored above the true one
    support = np.bincount(labels, minlength=k)
    predicted = np.bincount(pred, minlength=k)
    tp = np.bincount(labels[pred == labels], minlength=k).astype(np.float64)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    present = support > 0
    weights = support / n if n else np.zeros(k)

    def avg(values: np.ndarray) -> dict[str, float]:
        return {"macro": float(values[present].mean()) if present.any() else 0.0,
                "weighted": float((values * weights).sum())}

    pairs, counts = np.unique(labels * k + pred, return_counts=True)
    order = np.argsort(-counts, kind="stable")  # most frequent first, then true and predicted class order
    return {
        "samples": int(n),
        "classes": int(k),
        "accuracy": float((pred == labels).mean()) if n else 0.0,
        f"top{top}_accuracy": float((rank < top).mean()) if n else 0.0,
        "precision": avg(precision), "recall": avg(recall), "f1": avg(f1),
        "per_class": {class_names[i]: {"precision": float(precision[i]), "recall": float(recall[i]),
                                       "f1": float(f1[i]), "support": int(support[i])}
                      for i in np.flatnonzero(present | (predicted > 0))},
        "confusion": [{"true": class_names[p // k], "predicted": class_names[p % k], "count": int(c)}
                      for p, c in zip(pairs[order], counts[order])],
    }


def confusion_matrix(report: dict[str, Any], names: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Dense counts (true rows, predicted columns) over ``names``, by default the report's classes."""
    names = list(report["per_class"] if names is None else names)
    index = {name: i for i, name in enumerate(names)}
    cm = np.zeros((len(names), len(names)), dtype=np.int64)
    for c in report["confusion"]:
        cm[index[c["true"]], index[c["predicted"]]] = c["count"]
    return names, cm


def confusion_view(report: dict[str, Any]) -> dict[str, Any]:
    """What a confusion plot shows: the whole matrix when the report has a few dozen classes at most, else the
    most-confused pairs and the lowest recalls of the classes in the data (a readable plot at any class count)."""
    if len(report["per_class"]) <= DENSE_CLASSES:
        names, cm = confusion_matrix(report)
        return {"labels": names, "matrix": cm.tolist()}
    in_data = {name: m["recall"] for name, m in report["per_class"].items() if m["support"]}
    lowest = sorted(in_data, key=in_data.__getitem__)[:RECALLS_SHOWN]
    return {"pairs": [c for c in report["confusion"] if c["true"] != c["predicted"]][:PAIRS_SHOWN],
            "recall": {name: in_data[name] for name in lowest}, "classes_in_data": len(in_data)}


def by_support(report: dict[str, Any], rows: int = TABLE_ROWS) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """The ``rows`` classes with the most images (ties in model order) and how many classes were left out."""
    ranked = sorted(report["per_class"].items(), key=lambda item: -item[1]["support"])
    return ranked[:rows], max(0, len(ranked) - rows)


def summary(report: dict[str, Any]) -> dict[str, float]:
    """The headline figures of a report (for metadata and tables)."""
    top = next(k for k in report if k.startswith("top") and k.endswith("_accuracy"))
    return {"accuracy": report["accuracy"], top: report[top], "macro_f1": report["f1"]["macro"],
            "weighted_f1": report["f1"]["weighted"], "samples": report["samples"]}


def print_report(report: dict[str, Any], title: str = "Evaluation", console: Any = None) -> None:
    """Per-class table (the classes with the most images) plus the averages, on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    shown, omitted = by_support(report)
    for name, m in shown:
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    if omitted:
        table.add_row(f"[dim]... {omitted} more classes in report.json", "", "", "", "")
    for kind in ("macro", "weighted"):
        table.add_row(f"[bold]{kind} avg", f"{report['precision'][kind]:.3f}", f"{report['recall'][kind]:.3f}",
                      f"{report['f1'][kind]:.3f}", str(report["samples"]))
    console.print(table)
    top = next(k for k in report if k.startswith("top") and k.endswith("_accuracy"))
    console.print(f"accuracy {report['accuracy']:.4f}   {top.replace('_', ' ')} {report[top]:.4f}   "
                  f"samples {report['samples']}   classes {len(report['per_class'])} in the data or predicted, "
                  f"of the model's {report['classes']}")
