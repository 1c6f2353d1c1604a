"""Evaluation at ImageNet scale: time, peak memory and output size of ``edgeclf eval`` for EfficientNet-Lite0
(1000 classes, ImageNet weights, fp32 .tflite) on images made from scikit-image's photos.

    python benchmarks/eval_scale.py [--images 100] [--work DIR] [--out benchmarks/results/eval_scale.json]

Each photo gives images by crops, flips and rescales, spread over five ImageNet classes near its own, so the
report has confusions to show. ``edgeclf eval`` runs in a child process that reports its own peak resident
memory (VmHWM), so the figure is the command's alone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = Path(__file__).parent / "results"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _models import imagenet_labels, lite0_tflite  # noqa: E402

PHOTOS = {  # scikit-image photo -> ImageNet classes its images are filed under
    "chelsea.png": ["tabby, tabby cat", "tiger cat", "Persian cat", "Siamese cat, Siamese", "Egyptian cat"],
    "coffee.png": ["espresso", "cup", "coffee mug", "consomme", "espresso maker"],
    "rocket.jpg": ["missile", "projectile, missile", "space shuttle", "drilling platform, offshore rig", "pole"],
    "motorcycle_left.png": ["moped", "motor scooter, scooter", "disk brake, disc brake", "crash helmet",
                            "tricycle, trike, velocipede"],
    "astronaut.png": ["football helmet", "suit, suit of clothes", "mask", "oxygen mask",
                      "jersey, T-shirt, tee shirt"],
}
CHILD = ("import sys\nfrom edgeclf.benchmark.worker import peak_rss_mb\nfrom edgeclf.cli import main\n"
         "try:\n    main(sys.argv[1:], standalone_mode=False)\n"
         "finally:\n    print(f'peak_rss_mb {peak_rss_mb()}', file=sys.stderr)\n")


def photo_set(root: Path, images: int, seed: int = 0) -> Path:
    """``images`` class-per-folder images: random crops (60-100 % a side), flips and rescales of the photos."""
    import skimage
    from edgeclf.data import folder_name

    rng = np.random.default_rng(seed)
    folder = Path(skimage.__file__).parent / "data"
    classes = [(photo, label) for photo, labels in PHOTOS.items() for label in labels]
    for i in range(images):
        photo, label = classes[i * len(classes) // images]
        img = cv2.imread(str(folder / photo))
        h, w = img.shape[:2]
        ch, cw = (int(side * rng.uniform(0.6, 1.0)) for side in (h, w))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = img[y:y + ch, x:x + cw]
        if rng.random() < 0.5:
            img = img[:, ::-1]
        scale = rng.uniform(0.4, 1.0)
        img = cv2.resize(img, (max(32, int(cw * scale)), max(32, int(ch * scale))), interpolation=cv2.INTER_AREA)
        target = root / folder_name(label) / f"{Path(photo).stem}_{i:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(target), img)
    return root


def measured_eval(model: Path, data: Path, out: Path, *options: str) -> dict[str, Any]:
    """Run ``edgeclf eval MODEL DATA -o OUT OPTIONS`` in a child process: seconds, its peak RSS, output sizes."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, "eval", str(model), str(data), "-o", str(out), *options],
                          capture_output=True, text=True, timeout=600)
    seconds = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"edgeclf eval failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    peak = next(float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("peak_rss_mb "))
    report = json.loads((out / "report.json").read_text())
    return {"seconds": round(seconds, 2), "peak_rss_mb": peak,
            "bytes": {f.name: f.stat().st_size for f in sorted(out.iterdir())},
            "json_bytes": sum(f.stat().st_size for f in out.glob("*.json")),
            "accuracy": report["accuracy"], "top5_accuracy": report["top5_accuracy"],
            "classes_in_report": len(report["per_class"]), "stdout": proc.stdout, "stderr": proc.stderr}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeclf-eval-scale",
                    help="Folder for the .tflite (kept between runs), labels, images and eval output.")
    ap.add_argument("--out", type=Path, default=RESULTS / "eval_scale.json")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from edgeclf.benchmark.machine import machine_info
    from edgeclf.fileio import atomic_write_text

    model = args.work / "efficientnet_lite0_imagenet_fp32.tflite"
    built, t0 = not model.exists(), time.perf_counter()
    lite0_tflite(model)
    build_s = round(time.perf_counter() - t0, 1) if built else None  # None: the file was kept from a run before
    labels = imagenet_labels(args.work / "imagenet_labels.txt")
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        data = photo_set(Path(tmp) / "images", args.images)
        result = measured_eval(model, data, Path(tmp) / "eval", "--labels", str(labels), "--mean", "127",
                               "--std", "128")
    classes_in_data = min(args.images, sum(len(v) for v in PHOTOS.values()))
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "eval_command": "edgeclf eval efficientnet_lite0_imagenet_fp32.tflite images -o eval --labels "
                        "imagenet_labels.txt --mean 127 --std 128",
        "machine": machine_info(),
        "model": {"name": "efficientnet_lite0", "classes": 1000, "format": "tflite fp32",
                  "bytes": model.stat().st_size, "build_s": build_s},
        "images": args.images, "classes_in_data": classes_in_data,
        **{k: v for k, v in result.items() if k not in ("stdout", "stderr")},
    }
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    table = Table("images", "classes (model / data / report)", "seconds", "peak RSS MB", "JSON bytes", "PNG bytes",
                  "top-1", "top-5", title="edgeclf eval at 1000 classes")
    table.add_row(str(args.images), f"1000 / {classes_in_data} / {result['classes_in_report']}",
                  f"{result['seconds']:.1f}", f"{result['peak_rss_mb']:.0f}", str(result["json_bytes"]),
                  str(result["bytes"].get("confusion_matrix.png", "-")), f"{result['accuracy']:.3f}",
                  f"{result['top5_accuracy']:.3f}")
    Console().print(table)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
