"""Sequential vs joint fine-tuning on three Fashion-MNIST classes, and what each forgets of the other seven.

A baseline EfficientNet-Lite0 (ImageNet weights, shipped offline) is trained on all 10 classes. Starting from
its weights (``weights=PATH``, a weights file saved from the baseline run), it is fine-tuned on the training
images of classes 3, 4 and 7 (dress, coat, sneaker) only:

- sequential: class 3 alone, then class 4 alone, then class 7 alone, ``--epochs`` each;
- joint: the three classes together, ``--epochs``.

The classifier keeps all 10 outputs. Every model is scored on the baseline's held-out test split (all 10
classes): accuracy on the three fine-tuned classes and on the other seven (forgetting). Validation during
fine-tuning is on all 10 classes, so the curves' ``val_accuracy`` shows forgetting as it happens; a callback
also records the per-group validation accuracy after every epoch. Writes, under
benchmarks/results/sequential_vs_joint/{quick,full}/ (or ``--out``): ``summary.json``,
``<variant>_confusion.{png,json}`` and ``<variant>_curves.png`` for baseline, sequential and joint, and
``forgetting_curves.png``.

    python benchmarks/sequential_vs_joint.py [--quick] [--epochs N] [--limit N] [--work DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeclf import plots  # noqa: E402
from edgeclf.data import Dataset, Splits, load_dataset, split  # noqa: E402
from edgeclf.fileio import atomic_path, atomic_write_text  # noqa: E402
from edgeclf.training.keras_io import load_model  # noqa: E402
from edgeclf.metrics import classification_report, confusion_matrix  # noqa: E402
from edgeclf.models import preprocess_for  # noqa: E402
from edgeclf.training.trainer import predict_probabilities, train  # noqa: E402

RESULTS = Path(__file__).parent / "results"
TARGET = (3, 4, 7)  # dress, coat, sneaker
ARCH = "efficientnet_lite0"


def only(ds: Dataset, classes: tuple[int, ...]) -> Dataset:
    """The images of ``classes`` (class names, hence the 10-way head, unchanged)."""
    return ds.subset(np.flatnonzero(np.isin(ds.labels, classes)))


def group_accuracy(cm: np.ndarray, classes: list[int]) -> float:
    """Share of the images of ``classes`` predicted as their own class (pooled over the group)."""
    cm = np.asarray(cm)
    total = cm[classes].sum()
    return float(np.diag(cm)[classes].sum() / total) if total else 0.0


def scores(cm: np.ndarray) -> dict[str, Any]:
    """Accuracy on the target classes, on the others, overall, and the recall of each target class."""
    cm = np.asarray(cm)
    others = [c for c in range(len(cm)) if c not in TARGET]
    return {"target_accuracy": round(group_accuracy(cm, list(TARGET)), 4),
            "other_accuracy": round(group_accuracy(cm, others), 4),
            "overall_accuracy": round(float(np.trace(cm) / cm.sum()), 4),
            "target_recall": {str(c): round(group_accuracy(cm, [c]), 4) for c in TARGET}}


def group_tracker(val: Dataset, img_size: int, rows: list[dict[str, Any]], stage: str) -> Any:
    """A Keras callback appending the per-group validation accuracy after each epoch to ``rows``."""
    import tf_keras as keras

    pre = preprocess_for(ARCH, img_size)

    class GroupAccuracy(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            report = classification_report(val.labels, predict_probabilities(self.model, val, pre), val.class_names)
            rows.append({"stage": stage, **scores(confusion_matrix(report, val.class_names)[1])})

    return GroupAccuracy()


def history(run: Path, phase: str | None = None) -> list[dict[str, Any]]:
    """A run's history.csv rows as ``plots.training_curves`` rows, renamed ``phase`` when given."""
    with open(run / "history.csv", newline="") as fh:
        return [{"phase": phase or row["phase"],
                 **{k: float(v) for k, v in row.items() if k not in ("epoch", "phase") and v}}
                for row in csv.DictReader(fh)]


def test_cm(run: Path, labels: list[str]) -> np.ndarray:
    """The run's confusion matrix on the (10-class) test split, from its metrics.json."""
    return confusion_matrix(json.loads((run / "metrics.json").read_text())["test"], labels)[1]


def save_variant(out: Path, name: str, cm: np.ndarray, labels: list[str], rows: list[dict[str, Any]]) -> None:
    """Confusion matrix (PNG + JSON) and training curves (PNG) of one variant."""
    atomic_write_text(out / f"{name}_confusion.json",
                      json.dumps({"labels": labels, "confusion_matrix": cm.tolist(), **scores(cm)}, indent=2))
    plots.confusion_matrix(cm, labels, out / f"{name}_confusion.png", title=f"{name}: test split (10 classes)")
    plots.training_curves([{**r, "epoch": i} for i, r in enumerate(rows)], out / f"{name}_curves.png")


def forgetting_plot(tracks: dict[str, list[dict[str, Any]]], start: dict[str, Any], target: Path) -> None:
    """Validation accuracy on the three fine-tuned classes and on the other seven, per fine-tuning epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (variant, rows) in enumerate(tracks.items()):
        epochs = range(len(rows) + 1)
        for key, style in (("target_accuracy", "-o"), ("other_accuracy", "--s")):
            group = "classes 3,4,7" if key == "target_accuracy" else "other 7"
            ax.plot(epochs, [start[key]] + [r[key] for r in rows], style, color=f"C{i}", ms=3,
                    label=f"{variant}: {group}")
    ax.set_xlabel("fine-tuning epoch (0 = baseline)")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(target) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def print_table(summary: dict[str, Any], names: list[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Fine-tuning on classes {', '.join(map(str, TARGET))} ({', '.join(names)}): test split")
    for col in ("model", "acc 3,4,7", "acc other 7", "overall", *(f"recall {c}" for c in TARGET)):
        table.add_column(col, justify="left" if col == "model" else "right", no_wrap=col == "model")
    for name, s in summary.items():
        table.add_row(name, f"{s['target_accuracy']:.4f}", f"{s['other_accuracy']:.4f}", f"{s['overall_accuracy']:.4f}",
                      *(f"{s['target_recall'][str(c)]:.4f}" for c in TARGET))
    Console().print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 1500-image subset, 2 baseline epochs, 2 per fine-tune")
    ap.add_argument("--epochs", type=int, help="fine-tuning epochs per step (default 10; --quick 2)")
    ap.add_argument("--limit", type=int, help="stratified Fashion-MNIST subset (default 12000; --quick 1500)")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--work", type=Path, help="keep the run folders here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, help="results folder (default: results/sequential_vs_joint/quick|full)")
    args = ap.parse_args()
    limit = args.limit or (1500 if args.quick else 12000)
    epochs = args.epochs or (2 if args.quick else 10)
    base_epochs, base_head = (2, 1) if args.quick else (6, 1)
    common = dict(arch=ARCH, img_size=args.img_size, batch_size=32, seed=0, verbose=2, class_weights="none")
    finetune = dict(epochs=epochs, freeze_epochs=0, fine_tune_fraction=1.0, fine_tune_lr=2e-4, **common)

    ds = load_dataset("fashion_mnist", limit=limit, seed=0)
    base = split(ds, val=0.1, test=0.2, calib=0.05, seed=0, calib_max=200)
    labels = ds.class_names
    step_data = {"joint": only(base.train, TARGET), **{f"class {c}": only(base.train, (c,)) for c in TARGET}}
    started = time.time()
    tracks: dict[str, list[dict[str, Any]]] = {"sequential": [], "joint": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        base_run = train(base, out=work / "baseline", weights="imagenet", lr=1e-3,
                         **{**finetune, "epochs": base_epochs, "freeze_epochs": base_head})
        base_model = load_model(base_run)
        base_weights = work / "baseline.weights.h5"
        base_model.save_weights(str(base_weights))
        base_cm = test_cm(base_run, labels)
        val_start = scores(confusion_matrix(classification_report(base.val.labels, predict_probabilities(
            base_model, base.val, preprocess_for(ARCH, args.img_size)), labels), labels)[1])

        def fine_tune(name: str, start: Path, variant: str) -> Path:
            splits = Splits(step_data[name], base.val, base.test, base.calib)
            cb = group_tracker(base.val, args.img_size, tracks[variant], name)
            return train(splits, out=work / f"{variant}-{name.replace(' ', '')}", weights=str(start),
                         callbacks=[cb], **finetune)

        seq_runs, weights = [], base_weights
        for c in TARGET:
            run = fine_tune(f"class {c}", weights, "sequential")
            weights = work / f"{run.name}.weights.h5"
            load_model(run).save_weights(str(weights))
            seq_runs.append(run)
        joint_run = fine_tune("joint", base_weights, "joint")

        out = args.out or RESULTS / "sequential_vs_joint" / ("quick" if args.quick else "full")
        save_variant(out, "baseline", base_cm, labels, history(base_run))
        save_variant(out, "sequential", test_cm(seq_runs[-1], labels), labels,
                     [r for c, run in zip(TARGET, seq_runs) for r in history(run, f"class {c}")])
        save_variant(out, "joint", test_cm(joint_run, labels), labels, history(joint_run, "classes 3+4+7"))
        summary = {"baseline": scores(base_cm),
                   **{f"sequential {'>'.join(map(str, TARGET[:i + 1]))}": scores(test_cm(run, labels))
                      for i, run in enumerate(seq_runs)},
                   "joint": scores(test_cm(joint_run, labels))}
        test_images = len(base.test)
    forgetting_plot(tracks, val_start, out / "forgetting_curves.png")
    record = {"quick": args.quick, "arch": ARCH, "weights": "imagenet", "input_size": args.img_size,
              "images": len(ds), "split_sizes": {k: len(getattr(base, k)) for k in ("train", "val", "test", "calib")},
              "test_images": test_images, "target_classes": {str(c): labels[c] for c in TARGET},
              "baseline_epochs": base_epochs, "baseline_head_epochs": base_head, "finetune_epochs_per_step": epochs,
              "finetune_lr": finetune["fine_tune_lr"],
              "finetune_train_images": {k: len(v) for k, v in step_data.items()},
              "test": summary, "val_per_epoch": {"baseline": val_start, **tracks},
              "seconds": round(time.time() - started), "cpu_count": os.cpu_count(), "machine": platform.machine()}
    atomic_write_text(out / "summary.json", json.dumps(record, indent=2))
    print_table(summary, [labels[c] for c in TARGET])
    print(f"written to {out}")


if __name__ == "__main__":
    main()
