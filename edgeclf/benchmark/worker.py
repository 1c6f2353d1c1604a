"""Measure one model file on one device, in a process of its own: ``python -m edgeclf.benchmark.worker JOB.json``.

``edgeclf.benchmark`` starts one of these per file and device, so the peak memory figure belongs to that
file alone and a crash in a native library becomes one failed row. The job (a JSON file) says what to
measure; the result is one JSON object on stdout. Everything else the process or its native libraries
print goes to stderr, so stdout carries only the result.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time
from typing import Any, Callable

import numpy as np

PERCENTILES = (50, 90, 99)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MiB).

    Linux: ``VmHWM`` of /proc/self/status, which belongs to this program's own address space; ``ru_maxrss``
    there also counts the parent's memory at the fork that started us (the kernel carries it across exec).
    Elsewhere ``ru_maxrss`` (bytes on macOS).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 ** 2 if sys.platform == "darwin" else 1024), 1)


def latency_stats(times_ns: list[int]) -> dict[str, float]:
    """mean, std, min, p50, p90, p99, max of per-call times, in milliseconds."""
    ms = np.asarray(times_ns, dtype=np.float64) / 1e6
    stats = {"mean": ms.mean(), "std": ms.std(ddof=1) if len(ms) > 1 else 0.0, "min": ms.min()}
    stats.update({f"p{p}": np.percentile(ms, p) for p in PERCENTILES})
    stats["max"] = ms.max()
    return {k: round(float(v), 6) for k, v in stats.items()}


def timed_calls(fn: Callable[[], Any], runs: int, max_secs: float) -> list[int]:
    """Call ``fn`` ``runs`` times (fewer if ``max_secs`` runs out first, at least once); ns per call.

    The garbage collector is paused, as ``timeit`` does, so a collection does not land inside one call.
    """
    times: list[int] = []
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter_ns() + int(max_secs * 1e9)
        while len(times) < runs:
            t0 = time.perf_counter_ns()
            fn()
            t1 = time.perf_counter_ns()
            times.append(t1 - t0)
            if t1 >= deadline:
                break
    finally:
        if gc_was_on:
            gc.enable()
    return times


def quantization(rt: Any) -> str:
    """The file's own quantisation label, else what its input says (int8 in, or float)."""
    if rt.describe()["has_edgeclf_metadata"]:
        return rt.metadata.quantization
    return "int8" if rt.input_spec.scale else "float"


def _throughput(rt: Any, x: np.ndarray, batches: list[int], runs: int, warmup: int, max_secs: float,
                batch1: tuple[int, float]) -> list[dict[str, Any]]:
    """Images per second at each batch size; sizes above 1 only where the model's batch is dynamic."""
    out: list[dict[str, Any]] = []
    dynamic = rt.input_spec.shape[0] == -1
    for b in batches:
        if b == 1:
            n, mean_ms = batch1  # the latency loop's own figures
            out.append({"batch": 1, "runs": n, "ms_per_batch": mean_ms, "images_per_s": round(1000.0 / mean_ms, 2)})
            continue
        if not dynamic:
            out.append({"batch": b, "images_per_s": None,
                        "note": f"fixed batch size {rt.input_spec.shape[0]} in the model"})
            continue
        xb = np.repeat(x, b, axis=0)
        timed_calls(lambda: rt.infer(xb), max(1, warmup // b), max_secs)
        times = timed_calls(lambda: rt.infer(xb), max(3, runs // b), max_secs)
        mean_ms = float(np.mean(times)) / 1e6
        out.append({"batch": b, "runs": len(times), "ms_per_batch": round(mean_ms, 4),
                    "images_per_s": round(b * 1000.0 / mean_ms, 2)})
    return out


def labelled_probabilities(rt: Any, data: dict[str, Any], model: str) -> tuple[np.ndarray, np.ndarray]:
    """The probabilities of the job's class-per-folder images and each image's class as a model output index."""
    from edgeclf.data.dataset import Dataset, class_map
    ds = Dataset(data["class_names"], np.asarray(data["labels"]), paths=data["paths"], source=data["root"])
    truth = class_map(ds.class_names, rt.labels, model)[ds.labels]
    return np.stack([rt.probabilities(ds.image_bgr(i)) for i in range(len(ds))]), truth


def accuracy_figures(probs: np.ndarray, truth: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Top-1/top-5 accuracy of ``probs`` against ``truth``, and how many images they cover."""
    from edgeclf.metrics import classification_report
    report = classification_report(truth, probs, labels)
    topk = next(k for k in report if k.startswith("top") and k.endswith("_accuracy"))
    return {"accuracy": round(report["accuracy"], 6), "top5_accuracy": round(report[topk], 6),
            "data_images": len(truth)}


def accuracy(rt: Any, data: dict[str, Any], model: str) -> dict[str, Any]:
    """Top-1/top-5 accuracy on the job's class-per-folder images, plus each image's top-1 class."""
    probs, truth = labelled_probabilities(rt, data, model)
    return {**accuracy_figures(probs, truth, rt.labels), "top1": probs.argmax(1).tolist()}


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Load, warm up and time one file as the job says; EdgeclfError becomes a failed/unavailable status."""
    from edgeclf.errors import DeviceUnavailableError, EdgeclfError
    from edgeclf.runtime import Runtime

    model, runs, warmup, max_secs = job["model"], job["runs"], job["warmup"], job["max_secs"]
    baseline = peak_rss_mb()
    try:
        t0 = time.perf_counter_ns()
        rt = Runtime(model, device=job["device"], num_threads=job["threads"], **job["runtime"])
        init_ms = (time.perf_counter_ns() - t0) / 1e6
        frame = np.random.default_rng(0).integers(0, 256, (*rt.input_size, 3), dtype=np.uint8)
        x = rt.preprocess(frame)
        t0 = time.perf_counter_ns()
        rt.infer(x)
        first_ms = (time.perf_counter_ns() - t0) / 1e6
        warm = timed_calls(lambda: rt.infer(x), warmup, max_secs) if warmup else []
        times = timed_calls(lambda: rt.infer(x), runs, max_secs)
        stats = latency_stats(times)
        result: dict[str, Any] = {
            "status": "passed", "quant": quantization(rt), "backend": rt.backend,
            "input": {"shape": list(rt.input_spec.shape), "dtype": str(rt.input_dtype)},
            "init_ms": round(init_ms, 3), "first_ms": round(first_ms, 3),
            "warmup_runs": len(warm), "warmup_ms": round(float(np.mean(warm)) / 1e6, 4) if warm else None,
            "runs": len(times), "latency_ms": stats, "fps": round(1000.0 / stats["mean"], 2),
            "throughput": _throughput(rt, x, job["batch"], runs, warmup, max_secs,
                                      (len(times), stats["mean"])),
        }
        result["peak_rss_mb"] = peak_rss_mb()
        result["baseline_rss_mb"] = baseline
        if job.get("data"):
            result.update(accuracy(rt, job["data"], model))
        return result
    except DeviceUnavailableError as exc:
        return {"status": f"unavailable: {exc}"}
    except EdgeclfError as exc:
        return {"status": f"failed: {exc}"}


def main(argv: list[str], run: Callable[[dict[str, Any]], dict[str, Any]] = measure) -> int:
    """Run the job file named in ``argv[0]`` through ``run`` and print its result as JSON on the real stdout."""
    result_fd = os.dup(1)
    os.dup2(2, 1)  # native libraries that print to stdout now print to stderr
    with open(argv[0], encoding="utf-8") as fh:
        job = json.load(fh)
    result = run(job)
    with os.fdopen(result_fd, "w", encoding="utf-8") as out:
        out.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
