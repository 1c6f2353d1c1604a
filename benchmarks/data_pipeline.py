"""Is the tf.data folder pipeline the bottleneck? Images/s of one training epoch of the same model fed
(a) from JPEG files through edgeclf's pipeline (parallel decode + resize + augment) and (b) from
already-resized in-memory arrays (same augmentation and normalisation in-graph). Writes benchmarks/results/data_pipeline[_quick].json.

    python benchmarks/data_pipeline.py [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeclf.data import load_dataset, load_folder  # noqa: E402
from edgeclf.data.augment import Augment, augment_batch  # noqa: E402
from edgeclf.fileio import atomic_write_text  # noqa: E402
from edgeclf.data.pipeline import make_pipeline  # noqa: E402
from edgeclf.models import build, preprocess_for  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def write_folder(ds, root: Path) -> None:
    """Fashion-MNIST images as JPEG files in class folders (a real decode workload)."""
    for c, name in enumerate(ds.class_names):
        (root / name.replace("/", "-")).mkdir(parents=True)
    for i in range(len(ds)):
        name = ds.class_names[ds.labels[i]].replace("/", "-")
        cv2.imwrite(str(root / name / f"{i}.jpg"), cv2.cvtColor(ds.images[i], cv2.COLOR_RGB2BGR))


def epoch_rate(model, data, n: int, epochs: int) -> list[float]:
    """Images/s of each training epoch (the first includes decode before the cache fills)."""
    rates = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.fit(data, epochs=1, verbose=0)
        rates.append(n / (time.perf_counter() - t))
    return rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n, size, batch, epochs = (1000, 64, 32, 2) if args.quick else (5000, 96, 32, 3)
    import tensorflow as tf
    import tf_keras as keras

    pre = preprocess_for("mobilenet_v2", size)
    ds = load_dataset("fashion_mnist", part="train", limit=n)
    with tempfile.TemporaryDirectory() as tmp:
        write_folder(ds, Path(tmp))
        folder_ds = load_folder(tmp)
        results = {}
        for name in ("folder_pipeline", "in_memory"):
            keras.utils.set_random_seed(0)
            model = build("mobilenet_v2", 10, size, weights=None, alpha=0.35)
            model.compile("adam", "categorical_crossentropy")
            if name == "folder_pipeline":
                data = make_pipeline(folder_ds, pre, batch, training=True, augment=Augment())
            else:  # the same augmentation and normalisation, on arrays resized beforehand
                x = ds.prepared(pre).astype(np.float32)
                y = tf.one_hot(ds.labels, 10).numpy()
                data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x)).batch(batch)
                        .map(lambda a, b: augment_batch(a, b, Augment())).map(lambda a, b: ((a - 127.5) / 127.5, b))
                        .prefetch(2))
            model.fit(data.take(2), verbose=0)  # trace the train step outside the timing
            results[name] = [round(r, 1) for r in epoch_rate(model, data, len(ds), epochs)]
    out = {"images": len(ds), "input_size": size, "batch": batch, "model": "mobilenet_v2 alpha 0.35, weights None",
           "images_per_second_per_epoch": results,
           "ratio_last_epoch_pipeline_vs_memory": round(results["folder_pipeline"][-1] / results["in_memory"][-1], 3),
           "cpu_count": os.cpu_count(), "machine": platform.machine(), "tensorflow": tf.__version__}
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"data_pipeline{'_quick' if args.quick else ''}.json"
    atomic_write_text(target, json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
