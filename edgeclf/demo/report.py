"""The demo's report: settings, training curves, confusion matrix, per-class metrics, the format table,
latency versus accuracy, a Grad-CAM example and how to run each file (Markdown + HTML)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edgeclf import report as R
from edgeclf.metrics import by_support


def _gradcam_example(run: Path, target: Path) -> str:
    """Grad-CAM of the trained Keras model on the first test image; returns the caption."""
    from edgeclf.training.gradcam import explain

    with np.load(run / "test.npz") as npz:
        img, y = npz["images"][0], int(npz["labels"][0])
    label, p = explain(run, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), target)
    truth = json.loads((run / "metadata.json").read_text())["labels"][y]
    return f"Grad-CAM: true class '{truth}', predicted '{label}' (p={p:.2f}); red is where the model looked"


def shell_commands(out: Path, int8_path: Path, files: Sequence[str | Path]) -> str:
    """The report's "Run it" shell lines (tests/test_documented_commands.py runs them as printed)."""
    return (f"edgeclf predict {int8_path} {out / 'test_images'}/*/00000.png\n"
            f"edgeclf bench {' '.join(map(str, files))} --data {out / 'test_images'}\n"
            f"python3 examples/raspberrypi/classify_camera.py {int8_path.name}")


def _fmt_ms(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _format_rows(conversions: Sequence[Any], records: Sequence[dict[str, Any]]) -> list[list[Any]]:
    by_path = {str(Path(r["model"]).resolve()): r for r in records}
    rows = []
    for c in conversions:
        if c.path is None:
            rows.append([c.format, c.quant, "-", "-", "-", "-", "-", "-", "failed: " + "; ".join(c.notes)])
            continue
        r = by_path.get(str(Path(c.path).resolve()), {})
        acc = r.get("accuracy")
        agree = c.parity.agreement if c.parity else None
        rows.append([Path(c.path).name, c.quant, f"{c.size_bytes / 1e6:.2f} MB",
                     f"{r['gzip_bytes'] / 1e6:.2f} MB" if r.get("gzip_bytes") else "-",
                     f"{agree:.3f}" if agree is not None else "-", f"{acc:.3f}" if acc is not None else "-",
                     _fmt_ms((r.get("latency_ms") or {}).get("p50")), _fmt_ms(r.get("fps")), r.get("status", "-")])
    return rows


def _class_rows(test: dict[str, Any]) -> list[list[Any]]:
    """The classes with the most test images, a line for the rest, and the macro averages."""
    shown, omitted = by_support(test)
    rows: list[list[Any]] = [[name, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                             for name, m in shown]
    if omitted:
        rows.append([f"... {omitted} more classes in metrics.json", "", "", "", ""])
    return rows + [["macro avg", f"{test['precision']['macro']:.3f}", f"{test['recall']['macro']:.3f}",
                    f"{test['f1']['macro']:.3f}", test["samples"]]]


def build_report(out: Path, run: Path, conversions: Sequence[Any], records: Sequence[dict[str, Any]],
                 plan: Any, timings: dict[str, float]) -> list[Path]:
    """Assemble and write ``report.md`` / ``report.html`` in ``out``."""
    settings = json.loads((run / "hparams.json").read_text())  # grouped as training.settings.Settings saves it
    model = settings["model"]
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    cam_caption = _gradcam_example(run, out / "gradcam.png")
    int8 = next((c for c in conversions if c.quant == "int8" and c.path), None)
    int8_path = Path(int8.path) if int8 else Path("model.tflite")
    b: list[R.Block] = [
        R.heading("edgeclf demo report", 1),
        R.text(f"{model['arch']} fine-tuned on {metrics['split_sizes']['train']} Fashion-MNIST images at "
               f"{model['img_size']}x{model['img_size']}, pruned to {metrics.get('target_sparsity') or 0:.0%} target "
               f"sparsity (reached {metrics.get('sparsity') or 0:.1%}) and trained quantisation-aware; test accuracy "
               f"of the Keras model {test['accuracy']:.3f} on {test['samples']} held-out images."),
        R.heading("Settings"),
        R.table(["setting", "value"], [[f"{group}.{k}", json.dumps(v)] for group, values in settings.items()
                                       if isinstance(values, dict) for k, v in values.items()]
                + [["strategy", json.dumps(settings["strategy"])]]),
        R.table(["split", "images"], [[k, v] for k, v in metrics["split_sizes"].items()]),
        R.heading("Training"),
        R.image(run / "plots" / "training_curves.png", "Loss and accuracy per epoch, phases shaded"),
        R.heading("Test split: confusions and per-class metrics"),
        R.image(run / "plots" / "confusion_matrix.png", "Confusions on the test split"),
        R.table(["class", "precision", "recall", "F1", "support"], _class_rows(test)),
        R.heading("Formats"),
        R.text("Each file was checked against the Keras model on the calibration split (agreement = top-1 "
               "agreement) and benchmarked on this machine's CPU; accuracy is on the test split."),
        R.table(["file", "quant", "size", "gzip", "agreement", "test top-1", "p50 ms", "FPS", "status"],
                _format_rows(conversions, records)),
        R.image(out / "latency_vs_accuracy.png", "Latency versus accuracy per file"),
        R.heading("Why it decided: Grad-CAM"),
        R.image(out / "gradcam.png", cam_caption),
        R.heading("Run it"),
        R.text("In an app (pip install \"edgeclf[opencv]\"; no TensorFlow needed):"),
        R.code(f"from edgeclf import Runtime\nrt = Runtime('{int8_path.name}')\n"
               "print(rt.predict('shirt.png', top_k=3))"),
        R.text("From the shell, and on a Raspberry Pi with a camera (examples/raspberrypi/):"),
        R.code(shell_commands(out, int8_path, [c.path for c in conversions if c.path])),
        R.heading("Timings"),
        R.table(["step", "seconds"], [[k, f"{v:.1f}"] for k, v in timings.items()]),
    ]
    return R.write_report(b, out, title="edgeclf demo report")
