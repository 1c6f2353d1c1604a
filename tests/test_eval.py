"""Evaluation at any class count: sparse metrics, readable plots, small files, bounded memory and time, and
``edgeclf eval`` on the runtime install (no TensorFlow, no matplotlib)."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np

from edgeclf import plots
from edgeclf.metrics import DENSE_CLASSES, classification_report, confusion_matrix, confusion_view

import eval_scale  # benchmarks/ is on the path (conftest): the measured eval run is shared

LITE0_OPTIONS = ("--mean", "127", "--std", "128")


def _scores(rng: np.random.Generator, labels: np.ndarray, k: int, hit: float) -> np.ndarray:
    """Random (N, K) scores whose argmax is the label for about ``hit`` of the rows."""
    scores = rng.random((len(labels), k))
    rows = np.flatnonzero(rng.random(len(labels)) < hit)
    scores[rows, labels[rows]] = 2.0
    return scores


def test_report_counts_match_the_dense_definition():
    rng = np.random.default_rng(0)
    k, names = 6, [f"c{i}" for i in range(6)]
    labels = rng.integers(0, 5, 200)  # class c5 is never true
    scores = _scores(rng, labels, k, 0.6)
    report = classification_report(labels, scores, names)
    dense = np.zeros((k, k), np.int64)
    np.add.at(dense, (labels, scores.argmax(1)), 1)
    assert (confusion_matrix(report, names)[1] == dense).all()
    assert report["accuracy"] == np.trace(dense) / 200 and report["classes"] == k
    top5 = np.argsort(-scores, 1)[:, :5]
    assert report["top5_accuracy"] == (top5 == labels[:, None]).any(1).mean()
    for i, name in enumerate(names):
        if name in report["per_class"]:
            m = report["per_class"][name]
            assert m["support"] == dense[i].sum()
            assert m["recall"] == (dense[i, i] / dense[i].sum() if dense[i].sum() else 0.0)
    assert report["recall"]["macro"] == np.mean([np.diag(dense)[i] / dense[i].sum() for i in range(5)])


def test_thousand_classes_keep_files_and_plots_small(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"class number {i} with a long ImageNet-like name, synonym" for i in range(1000)]
    labels = rng.choice(rng.choice(1000, 60, replace=False), 600)
    report = classification_report(labels, _scores(rng, labels, 1000, 0.5), names)
    assert len(report["per_class"]) <= 60 + 300 and sum(c["count"] for c in report["confusion"]) == 600
    assert len(json.dumps(report)) < 200_000  # a dense 1000 x 1000 matrix alone is 3 MB
    view = confusion_view(report)
    assert "matrix" not in view and len(view["pairs"]) == 20 and len(view["recall"]) == 40
    assert view["classes_in_data"] == len(set(labels.tolist()))
    assert plots.confusion(view, tmp_path / "many.png", "1000 classes")
    h, w = cv2.imread(str(tmp_path / "many.png")).shape[:2]
    assert w <= 1600 and h <= 1400

    few = classification_report(labels[:40] % 8, _scores(rng, labels[:40] % 8, 1000, 0.9), names)
    small = confusion_view(few)
    assert len(small["labels"]) <= DENSE_CLASSES and np.sum(small["matrix"]) == 40
    assert plots.confusion(small, tmp_path / "few.png")


def test_eval_of_a_1000_class_model_is_bounded(lite0_tflite, imagenet_labels, photo_folder, tmp_path):
    """The pretrained Lite0 at 1000 classes on four photos: seconds, well under 1 GB, a few KB of JSON."""
    out = tmp_path / "eval"
    result = eval_scale.measured_eval(lite0_tflite, photo_folder, out, "--labels", str(imagenet_labels),
                                        *LITE0_OPTIONS)
    assert result["peak_rss_mb"] < 500, result
    assert result["seconds"] < 60, result
    assert result["json_bytes"] < 8_000 and result["bytes"]["confusion_matrix.png"] < 200_000, result
    report = json.loads((out / "report.json").read_text())
    assert report["classes"] == 1000 and len(report["per_class"]) <= 2 * report["samples"]
    assert report["accuracy"] >= 0.75 and report["per_class"]["espresso"]["recall"] == 1.0
    terminal = " ".join(result["stdout"].split())
    assert "more classes" not in terminal and "classes 5 in the data or predicted, of the model's 1000" in terminal


def test_eval_on_the_runtime_install_skips_only_the_plot(lite0_tflite, imagenet_labels, photo_folder, tmp_path):
    code = f"""
import sys
for name in ("matplotlib", "tensorflow", "tf_keras", "keras"):
    sys.modules[name] = None  # as on a runtime-only install
from edgeclf.cli import main
main(["eval", {str(lite0_tflite)!r}, {str(photo_folder)!r}, "--labels", {str(imagenet_labels)!r},
      "--mean", "127", "--std", "128", "-o", {str(tmp_path / 'e')!r}], standalone_mode=False)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = [line for line in proc.stderr.splitlines() if "skipped" in line]
    assert len(skipped) == 1 and "pip install matplotlib" in skipped[0] and "Traceback" not in proc.stderr
    assert {p.name for p in (tmp_path / "e").iterdir()} == {"report.json", "confusion_matrix.json"}
    assert "accuracy 0.7500" in proc.stdout
