"""Long fuzzing run: every target for a while, counting crashes, hangs and unbounded memory (all must be zero).

    python benchmarks/fuzz.py [--seconds 30] [--only NAME,...] [--out benchmarks/results/fuzz.json]

The targets and input strategies are those of the test suite (``tests/fuzzing.py``), on tiny models built
here like the suite's fixtures: a float and an int8 .tflite and an .onnx (mutated bytes through the metadata
reader and a whole ``Runtime``), a Keras config (mutated JSON through the config inspector), and upload bytes (a
mutated JPEG and PNG through the header checks and the decoder). ``TARGETS``
maps a name to a function of the seed folder giving its ``Target``; add entries to fuzz more. Each target
runs in its own process, so a native crash is counted rather than ending the run. Per input: over
``HANG_SECONDS`` is a hang, peak RSS growing over ``MEMORY_MB`` is unbounded memory, any exception but an
``EdgeclfError`` is a crash. Writes benchmarks/results/fuzz.json.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from fuzzing import Target, fuzz, image_target, keras_config_target, model_targets  # noqa: E402

HANG_SECONDS = 5.0
MEMORY_MB = 512.0
BATCH = 50

TARGETS: dict[str, Callable[[Path], Target]] = {
    "tflite-float-metadata": lambda seeds: model_targets(seeds / "float.tflite")["metadata"],
    "tflite-float-runtime": lambda seeds: model_targets(seeds / "float.tflite")["runtime"],
    "tflite-int8-runtime": lambda seeds: model_targets(seeds / "int8.tflite")["runtime"],
    "onnx-metadata": lambda seeds: model_targets(seeds / "model.onnx")["metadata"],
    "onnx-runtime": lambda seeds: model_targets(seeds / "model.onnx")["runtime"],
    "keras-config": lambda seeds: keras_config_target(json.loads((seeds / "config.json").read_text())),
    "jpeg-decode": lambda seeds: image_target((seeds / "photo.jpg").read_bytes()),
    "png-decode": lambda seeds: image_target((seeds / "photo.png").read_bytes()),
}


def make_seeds(folder: Path) -> None:
    """The seed inputs: the suite's tiny classifier as float and int8 .tflite, .onnx and its .keras config, and a
    small photo-like JPEG (progressive) and PNG."""
    import cv2
    import numpy as np
    import tf2onnx
    import tensorflow as tf
    from fixture_models import SIZE, _to_tflite, keras_model

    from edgeclf.training.keras_config import read_config
    from edgeclf.training.keras_io import save_model

    model = keras_model()
    (folder / "float.tflite").write_bytes(_to_tflite(model, "fp32"))
    (folder / "int8.tflite").write_bytes(_to_tflite(model, "int8", "uint8"))
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name="input"),)
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(folder / "model.onnx"))
    (folder / "config.json").write_text(json.dumps(read_config(save_model(model, folder / "model.keras"))))
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    image = np.dstack([np.tile(ramp, (48, 1)), np.tile(ramp[:48, None], (1, 64)), np.full((48, 64), 90, np.uint8)])
    (folder / "photo.jpg").write_bytes(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())
    (folder / "photo.png").write_bytes(cv2.imencode(".png", image)[1].tobytes())


def _measure(stats: dict[str, Any]) -> Callable[[Target, Any], str]:
    """A check wrapper that times each input and watches peak RSS, counting instead of raising."""
    def observe(target: Target, value: Any) -> str:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        try:
            outcome = target.check(value)
        except Exception as exc:  # the bug this run looks for: anything but an EdgeclfError
            stats["crashes"] += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            stats.setdefault("first_crash", f"{type(exc).__name__}: {exc}"[:300] + f" at {where.filename}:{where.lineno}")
            outcome = "crash"
        seconds = time.perf_counter() - start
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before
        stats["hangs"] += seconds > HANG_SECONDS
        stats["memory"] += growth > MEMORY_MB
        stats["max_seconds"] = max(stats["max_seconds"], round(seconds, 4))
        return outcome
    return observe


def run_one(name: str, seeds: Path, seconds: float) -> dict[str, Any]:
    """Fuzz one target in this process for ``seconds``, in batches; its counts."""
    target = TARGETS[name](seeds)
    fuzz(target, 1)  # imports and first-call set-up, outside the measurement
    stats: dict[str, Any] = {"inputs": 0, "crashes": 0, "hangs": 0, "memory": 0, "max_seconds": 0.0, "outcomes": {}}
    observe, end = _measure(stats), time.monotonic() + seconds
    while time.monotonic() < end:
        for outcome, count in fuzz(target, BATCH, observe).items():
            stats["outcomes"][outcome] = stats["outcomes"].get(outcome, 0) + count
            stats["inputs"] += count
    return stats


def run_isolated(name: str, seeds: Path, seconds: float) -> dict[str, Any]:
    """``run_one`` in a child process: a native crash counts as one crash of that target."""
    proc = subprocess.run([sys.executable, __file__, "--child", name, "--seeds", str(seeds), "--seconds", str(seconds)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return {"inputs": 0, "crashes": 1, "hangs": 0, "memory": 0,
                "first_crash": f"process ended with {proc.returncode}: {proc.stderr[-300:]}"}
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=30.0, help="Fuzzing time per target.")
    ap.add_argument("--only", help="Comma-separated target names (default: all).")
    ap.add_argument("--out", default=str(HERE / "results" / "fuzz.json"))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--seeds", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child, Path(args.seeds), args.seconds)), flush=True)
        return
    from edgeclf.fileio import atomic_write_text

    names = args.only.split(",") if args.only else list(TARGETS)
    with tempfile.TemporaryDirectory() as d:
        make_seeds(Path(d))
        results = {}
        for name in names:
            results[name] = run_isolated(name, Path(d), args.seconds)
            print(name, {k: v for k, v in results[name].items() if k != "outcomes"}, flush=True)
    totals = {k: sum(r[k] for r in results.values()) for k in ("inputs", "crashes", "hangs", "memory")}
    record = {"command": "python benchmarks/fuzz.py " + " ".join(sys.argv[1:]), "seconds_per_target": args.seconds,
              "bounds": {"hang_seconds": HANG_SECONDS, "memory_mb": MEMORY_MB}, "totals": totals, "targets": results}
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
    print("totals", totals)
    sys.exit(1 if totals["crashes"] or totals["hangs"] or totals["memory"] else 0)


if __name__ == "__main__":
    main()
