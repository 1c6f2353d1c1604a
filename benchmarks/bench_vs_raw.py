"""Honesty check: ``edgeclf bench``'s p50 against a bare interpreter loop on the same file and threads.

    python benchmarks/bench_vs_raw.py [--rounds 21] [--runs 100] [--warmup 20] [--threads 1,2] [--size 224]

Three MobileNetV2-1.0 files (random weights; latency does not depend on them): float TFLite, int8 TFLite
(uint8 I/O) and float ONNX (tf2onnx). Each round measures every file twice, each time in a fresh process:
``edgeclf.bench`` (its own worker process) and the bare loop below (``--raw``: ``set_tensor/invoke/
get_tensor`` or ``session.run`` timed with ``perf_counter_ns``, same warm-up and run count). The order
flips every round. The verdict uses the median over rounds of the paired ratio bench p50 / raw p50 (the
two measurements of a round run back to back, so slow drifts of a shared machine cancel); the ratio of
each side's median p50 is recorded too. Pass: the paired median is within 10 % of 1, for each file and
thread count. (On a shared 2-vCPU machine a process lands in one of two speed modes for its whole life
and the load drifts over minutes, so single rounds differ by up to 2x either way: hence many rounds,
fresh processes on both sides, medians.)
Writes benchmarks/results/bench_vs_raw.json.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TOLERANCE = 0.10


def raw_p50(model: str, threads: int, runs: int, warmup: int) -> float:
    """p50 (ms) of the bare engine on ``model``: no edgeclf code at all."""
    if model.endswith(".onnx"):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.log_severity_level = 3
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = np.random.default_rng(0).uniform(-1, 1, [d if isinstance(d, int) else 1 for d in inp.shape]).astype(np.float32)
        feed = {inp.name: x}

        def call() -> None:
            sess.run(None, feed)
    else:
        from ai_edge_litert.interpreter import Interpreter
        interp = Interpreter(model_path=model, num_threads=threads)
        interp.allocate_tensors()
        d_in, d_out = interp.get_input_details()[0], interp.get_output_details()[0]
        x = np.random.default_rng(0).integers(0, 256, d_in["shape"]).astype(d_in["dtype"])

        def call() -> None:
            interp.set_tensor(d_in["index"], x)
            interp.invoke()
            interp.get_tensor(d_out["index"])
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        call()
        times.append(time.perf_counter_ns() - t0)
    return float(np.percentile(np.asarray(times) / 1e6, 50))


def raw_in_fresh_process(model: Path, threads: int, args: argparse.Namespace) -> float:
    cmd = [sys.executable, __file__, "--raw", str(model), "--threads", str(threads), "--runs", str(args.runs),
           "--warmup", str(args.warmup)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--raw", help=argparse.SUPPRESS)  # internal: run the bare loop on this file, print p50
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_vs_raw.json")
    args = ap.parse_args()
    if args.raw:
        print(raw_p50(args.raw, int(args.threads), args.runs, args.warmup))
        return
    thread_counts = [int(t) for t in args.threads.split(",")]

    from _models import mobilenet_v2_onnx, mobilenet_v2_tflite
    from edgeclf.benchmark.session import bench
    from edgeclf.fileio import atomic_write_text
    from edgeclf.benchmark.machine import machine_info

    cache = HERE / "results" / "cache"
    models = {
        "tflite_float": mobilenet_v2_tflite(cache / f"mobilenet_v2_{args.size}_float.tflite", args.size, "float"),
        "tflite_int8": mobilenet_v2_tflite(cache / f"mobilenet_v2_{args.size}_int8.tflite", args.size, "int8"),
        "onnx_float": mobilenet_v2_onnx(cache / f"mobilenet_v2_{args.size}_float.onnx", args.size),
    }
    cases = [(name, t) for name in models for t in thread_counts]
    p50 = {case: {"bench": [], "raw": []} for case in cases}
    backend = {}
    for r in range(args.rounds):
        for name, threads in cases:
            model, got = models[name], p50[(name, threads)]
            for side in (("bench", "raw") if r % 2 == 0 else ("raw", "bench")):
                if side == "raw":
                    got["raw"].append(raw_in_fresh_process(model, threads, args))
                    continue
                rec = bench([model], threads=threads, runs=args.runs, warmup=args.warmup, progress=False)[0]
                if rec["status"] != "passed":
                    raise SystemExit(f"{model}: {rec['status']}")
                got["bench"].append(rec["latency_ms"]["p50"])
                backend[name] = rec["backend"]
            print(f"round {r + 1}/{args.rounds} {name} {threads} thread(s): bench {got['bench'][-1]:.3f} ms, "
                  f"raw {got['raw'][-1]:.3f} ms", file=sys.stderr, flush=True)
    results = []
    for (name, threads), sides in p50.items():
        med = {k: statistics.median(v) for k, v in sides.items()}
        paired = statistics.median(b / r for b, r in zip(sides["bench"], sides["raw"]))
        results.append({"model": name, "file": str(models[name].relative_to(HERE.parent)), "threads": threads,
                        "backend": backend[name], "median_p50_ms": {k: round(v, 4) for k, v in med.items()},
                        "ratio_of_medians": round(med["bench"] / med["raw"], 4),
                        "bench_over_raw": round(paired, 4), "within_tolerance": abs(paired - 1) <= TOLERANCE,
                        "p50_ms_per_round": {k: [round(x, 4) for x in v] for k, v in sides.items()}})
    report = {"runs": args.runs, "warmup": args.warmup, "rounds": args.rounds, "input_px": args.size,
              "tolerance": TOLERANCE, "machine": machine_info(), "results": results,
              "passed": all(m["within_tolerance"] for m in results)}
    print(json.dumps(report, indent=2))
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
