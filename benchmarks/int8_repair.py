"""A real int8 repair: EfficientNet-Lite0 calibrated on unrepresentative images, fixed by float fallback.

    .venv/bin/python benchmarks/int8_repair.py [--calib-kind noise|solid] [--calib-samples 24]

Builds the pretrained Lite0 (ImageNet weights, offline), calibrates its int8 ranges on random-noise (or
solid-colour) images - what happens when the calibration folder is the wrong one - and runs
``edgeclf convert --quant int8 --int8-fallback auto`` with 120 crops of scikit-image's photographs as the
check set. Records the gate before and after, the layers kept in float, latency and size before and after,
and the command, in benchmarks/results/int8_repair.json.
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

from _models import lite0_keras, photo_crops

RESULTS = Path(__file__).parent / "results" / "int8_repair.json"


def write_bad_images(folder: Path, n: int, kind: str, size: int = 256) -> Path:
    """``n`` seeded random-noise or solid-colour images: a calibration folder that represents nothing."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) if kind == "noise"
              else np.full((size, size, 3), rng.integers(0, 256, 3), np.uint8))
        cv2.imwrite(str(folder / f"{i:03d}.png"), im)
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calib-kind", choices=("noise", "solid"), default="noise")
    ap.add_argument("--calib-samples", type=int, default=24)
    ap.add_argument("--check-images", type=int, default=120)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    from edgeclf.conversion.pipeline import convert
    from edgeclf.errors import ConversionError

    with tempfile.TemporaryDirectory(prefix="edgeclf-int8-repair-") as tmp:
        work = Path(tmp)
        model, labels, pre = lite0_keras(work)
        calib = write_bad_images(work / "calib", args.calib_samples, args.calib_kind)
        check = photo_crops(work / "check", args.check_images, seed=1)
        command = (f"edgeclf convert lite0.keras --to tflite --quant int8 --calib {args.calib_kind}/ --check photos/ "
                   f"--labels {labels.name} --mean 127 --std 128 --int8-fallback auto")
        t0 = time.perf_counter()
        try:
            (res,) = convert(model, to="tflite", quant="int8", calib=calib, calib_samples=args.calib_samples,
                             check=check, labels=labels, mean=list(pre.mean), std=list(pre.std), out=work / "out",
                             int8_fallback="auto", keep_failed=True)
        except ConversionError as exc:
            (res,) = exc.results
        seconds = time.perf_counter() - t0
        layers = json.loads((work / "out" / "lite0_int8_layers.json").read_text())
    record = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "command": command, "calibration": f"{args.calib_samples} {args.calib_kind} images (deliberately unrepresentative)",
        "check": f"{args.check_images} random crops of scikit-image sample photos",
        "total_seconds": round(seconds, 1), "final_status": res.parity.status if res.parity else None,
        "gate_before": layers["gate_before"], "fallback": layers.get("fallback"),
        "worst_layers": layers["layers"][:10], "debug_seconds": layers["debug_seconds"],
    }
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
