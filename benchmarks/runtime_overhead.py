"""What edgeclf.Runtime costs over a bare interpreter loop, measured side by side in one run.

    python benchmarks/runtime_overhead.py [--rounds 30] [--per-round 10] [--threads 2]

Three calls on the same MobileNetV2-1.0 224x224 int8 (uint8 I/O) .tflite, interleaved call by call so
machine noise hits all alike: (a) bare ``set_tensor/invoke/get_tensor``, (b) ``Runtime.infer`` on the
same tensor, (c) ``Runtime.predict`` on a 640x480 BGR frame (crop, resize, colour, quantise, infer,
dequantise, top-5), a different one of 8 frames each call as from a camera (one frame reused would sit in the
cache and flatter predict). Targets: (b) <= 1.05 x (a); (c) <= 1.15 x (b). Writes benchmarks/results/runtime_overhead.json.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "runtime_overhead.json")
    args = ap.parse_args()

    from _models import mobilenet_v2_tflite
    model = mobilenet_v2_tflite(HERE / "results" / "cache" / "mobilenet_v2_224_int8.tflite")

    from ai_edge_litert.interpreter import Interpreter
    from edgeclf import Runtime
    bare = Interpreter(model_path=str(model), num_threads=args.threads)
    bare.allocate_tensors()
    i_in, i_out = bare.get_input_details()[0]["index"], bare.get_output_details()[0]["index"]
    rt = Runtime(model, num_threads=args.threads, mean=127.5, std=127.5)
    frames = [np.random.default_rng(i).integers(0, 256, (480, 640, 3), dtype=np.uint8) for i in range(8)]
    tensor = rt.preprocess(frames[0])
    calls = iter(range(1 << 62))

    def loop_bare() -> None:
        bare.set_tensor(i_in, tensor)
        bare.invoke()
        bare.get_tensor(i_out)

    loops = {"bare": loop_bare, "infer": lambda: rt.infer(tensor), "predict": lambda: rt.predict(frames[next(calls) % 8])}
    times: dict[str, list[float]] = {k: [] for k in loops}
    for fn in loops.values():                 # warm-up
        for _ in range(5):
            fn()
    for r in range(args.rounds):            # interleaved call by call: noise hits all three alike
        for _ in range(args.per_round):
            for name, fn in loops.items():
                t0 = time.perf_counter_ns()
                fn()
                times[name].append((time.perf_counter_ns() - t0) / 1e6)
        print(f"\rround {r + 1}/{args.rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "model": str(model.relative_to(HERE.parent)), "threads": args.threads, "runs_each": len(times["bare"]),
        "backend": rt.backend, "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "median_ms": {k: round(v, 4) for k, v in med.items()},
        "p90_ms": {k: round(float(np.percentile(v, 90)), 4) for k, v in times.items()},
        "infer_over_bare": round(med["infer"] / med["bare"], 4),
        "predict_over_infer": round(med["predict"] / med["infer"], 4),
        "targets": {"infer_over_bare": 1.05, "predict_over_infer": 1.15},
    }
    result["met"] = {k: result[k] <= t for k, t in result["targets"].items()}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
