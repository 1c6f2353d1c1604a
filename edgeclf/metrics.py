"""Classification metrics from labels and score vectors: accuracy, top-5, per-class precision/recall/F1,
macro and weighted averages, confusion matrix. Numpy only, so eval/bench need no TensorFlow."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def classification_report(labels: np.ndarray, scores: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of ``scores`` (N, K) against integer ``labels`` (N,); JSON-serialisable."""
    labels = np.asarray(labels, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    k = len(class_names)
    if scores.ndim != 2 or scores.shape != (len(labels), k):
        raise ValueError(f"scores must be (N, {k}) for N={len(labels)} labels, got {scores.shape}")
    pred = scores.argmax(1)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(k), where=(precision + recall) > 0)
    top = min(5, k)
    topk = np.argsort(-scores, axis=1)[:, :top]
    present = support > 0
    weights = support / support.sum() if support.sum() else np.zeros(k)

    def avg(values: np.ndarray) -> dict[str, float]:
        return {"macro": float(values[present].mean()) if present.any() else 0.0,
                "weighted": float((values * weights).sum())}

    return {
        "samples": int(len(labels)),
        "accuracy": float((pred == labels).mean()) if len(labels) else 0.0,
        f"top{top}_accuracy": float((topk == labels[:, None]).any(1).mean()) if len(labels) else 0.0,
        "precision": avg(precision), "recall": avg(recall), "f1": avg(f1),
        "per_class": {name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                             "support": int(support[i])} for i, name in enumerate(class_names)},
        "labels": list(class_names),
        "confusion_matrix": cm.tolist(),
    }


def summary(report: dict[str, Any]) -> dict[str, float]:
    """The headline figures of a report (for metadata and tables)."""
    top = next(k for k in report if k.startswith("top") and k.endswith("_accuracy"))
    return {"accuracy": report["accuracy"], top: report[top], "macro_f1": report["f1"]["macro"],
            "weighted_f1": report["f1"]["weighted"], "samples": report["samples"]}


def print_report(report: dict[str, Any], title: str = "Evaluation", console: Any = None) -> None:
    """Per-class table plus the averages, on the terminal (rich)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title=title)
    for col in ("class", "precision", "recall", "f1", "support"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, m in report["per_class"].items():
        table.add_row(name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", str(m["support"]))
    for kind in ("macro", "weighted"):
        table.add_row(f"[bold]{kind} avg", f"{report['precision'][kind]:.3f}", f"{report['recall'][kind]:.3f}",
                      f"{report['f1'][kind]:.3f}", str(report["samples"]))
    console.print(table)
    top = next(k for k in report if k.startswith("top") and k.endswith("_accuracy"))
    console.print(f"accuracy {report['accuracy']:.4f}   {top.replace('_', ' ')} {report[top]:.4f}   "
                  f"samples {report['samples']}")
