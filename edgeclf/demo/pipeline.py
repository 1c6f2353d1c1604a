"""``edgeclf demo``: the whole pipeline on built-in data, ending in a report a newcomer can read.

Fashion-MNIST -> EfficientNet-Lite0 from offline ImageNet weights, fine-tuned in two stages, pruned and
trained quantisation-aware -> TFLite fp32 / int8 and ONNX, each parity-gated -> benchmarked on the CPU
with accuracy on the held-out test split -> ``report.md`` and ``report.html``. Every step reuses the
public API (``train``, ``convert``, ``bench``), so the demo is also its worked example.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2

from edgeclf.data import folder_name
from edgeclf.errors import DataError
from edgeclf.fileio import atomic_write_bytes, atomic_write_text


@dataclass(frozen=True)
class DemoPlan:
    """The size of a demo run: how much data, how many epochs of each phase, how long to benchmark."""

    limit: int
    img_size: int
    epochs: int
    freeze_epochs: int
    prune_epochs: int
    qat_epochs: int
    batch_size: int
    bench_runs: int


PLANS = {
    "quick": DemoPlan(limit=1000, img_size=64, epochs=2, freeze_epochs=1, prune_epochs=1, qat_epochs=1,
                      batch_size=32, bench_runs=30),
    "full": DemoPlan(limit=5000, img_size=96, epochs=4, freeze_epochs=1, prune_epochs=1, qat_epochs=1,
                     batch_size=32, bench_runs=100),
}


def _load_data(limit: int, say: Any) -> Any:
    """Fashion-MNIST (Debian package, Keras cache or download); scikit-learn digits only as the stated last resort."""
    from edgeclf.data import load_dataset
    try:
        return load_dataset("fashion_mnist", limit=limit)
    except DataError as exc:
        say(f"[yellow]Fashion-MNIST unavailable ({exc}); falling back to scikit-learn digits[/]")
        return load_dataset("digits", limit=limit)


def export_test_images(test: Any, folder: Path) -> Path:
    """Write the held-out test split, as loaded (not resized), as class-per-folder PNGs: what ``bench --data``
    reads, and pictures to try ``edgeclf predict`` on."""
    for i in range(len(test)):
        target = folder / folder_name(test.class_names[int(test.labels[i])]) / f"{i:05d}.png"
        if not target.exists():
            ok, png = cv2.imencode(".png", test.image_bgr(i))
            atomic_write_bytes(target, png.tobytes())
    return folder


def demo(out: str | Path = "runs/demo", quick: bool = False, arch: str = "efficientnet_lite0",
         weights: str | None = "imagenet") -> Path:
    """Run the pipeline into ``out`` and return the path of ``report.md``; safe to re-run or resume."""
    from rich.console import Console

    from edgeclf.benchmark import report as bench_report
    from edgeclf.benchmark.session import bench
    from edgeclf.conversion.pipeline import convert
    from edgeclf.data import split
    from edgeclf.training.settings import Settings
    from edgeclf.training.trainer import train

    console = Console()
    say = console.print
    plan = PLANS["quick" if quick else "full"]
    out = Path(out)
    run, models, test_dir = out / "run", out / "models", out / "test_images"
    timings: dict[str, float] = {}

    for stale in ("report.md", "report.html"):  # a report only ever describes a finished run
        (out / stale).unlink(missing_ok=True)
    t0 = time.perf_counter()
    say(f"[bold]1/5 data[/]: Fashion-MNIST, {plan.limit} images, {plan.img_size}x{plan.img_size}")
    settings = dataclasses.asdict(plan)
    for key in ("limit", "bench_runs"):
        settings.pop(key)
    settings.update(arch=arch, weights=weights, prune=0.5, qat=True)
    st = Settings.from_flat(**settings)
    splits = split(_load_data(plan.limit, say), st.splits.val, st.splits.test, st.splits.calib, st.hparams.seed,
                   st.splits.calib_max)
    timings["data_s"] = time.perf_counter() - t0
    complete = (run / "metadata.json").is_file() and not (run / "state.json").exists()
    if complete:
        say(f"[bold]2/5 train[/]: {run} is complete, reusing it (delete it to train again)")
    else:
        if run.exists() and not (run / "state.json").exists():  # stopped before its first checkpoint
            shutil.rmtree(run)
        say(f"[bold]2/5 train[/]: {arch}, two stages, then 50% pruning and sparsity-preserving QAT")
        train(splits, out=run, resume=(run / "state.json").is_file(), **settings)
    timings["train_s"] = time.perf_counter() - t0 - timings["data_s"]

    t1 = time.perf_counter()
    say("[bold]3/5 convert[/]: TFLite fp32 + int8, ONNX fp32, each parity-checked against the Keras model "
        "on the held-out test images")
    # checked on the test split, not on the calibration images the int8 ranges were fitted to: more images
    # (a top-1 flip of one near-tie moves the agreement less) and none the quantiser has seen
    export_test_images(splits.test, test_dir)
    conversions = convert(run, to="tflite", quant=["fp32", "int8"], out=models, check=test_dir, verbose=True)
    conversions += convert(run, to="onnx", quant="fp32", out=models, check=test_dir, verbose=True)
    timings["convert_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    say("[bold]4/5 bench[/]: CPU latency, size and test accuracy of each file")
    files = [str(c.path) for c in conversions if c.path is not None and c.kept]
    records = bench(files, device="cpu", runs=plan.bench_runs, warmup=5, data=str(test_dir))
    bench_report.print_table(records)
    bench_report.write_json(records, out / "bench.json")
    bench_report.write_plot(records, out / "latency_vs_accuracy.png")
    timings["bench_s"] = time.perf_counter() - t2

    say("[bold]5/5 report[/]")
    from edgeclf.demo.report import build_report
    paths = build_report(out, run, conversions, records, plan, timings)
    total = time.perf_counter() - t0
    write_timings(out / "timings.json", timings, total, "quick" if quick else "full", arch, complete)
    say(f"report: {paths[0]} and {paths[1]} ({total:.0f} s in all)")
    return paths[0]


def write_timings(path: Path, steps: dict[str, float], total: float, plan: str, arch: str, reused: bool) -> None:
    """The run's seconds per step and in all, for benchmarks/demo.py to record (a reused run trains in ~0 s)."""
    record = {"plan": plan, "arch": arch, "reused_training": reused, "cpus": os.cpu_count(),
              "steps_s": {k: round(v, 1) for k, v in steps.items()}, "total_s": round(total, 1)}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
