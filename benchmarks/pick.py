"""``bench --pick`` on the pretrained EfficientNet-Lite0 at 224 px: every file x backend x threads, and the pick's cost.

    python benchmarks/pick.py [--runs 150] [--rounds 15] [--per-round 10] [--check-crops 400] [--check-seed 2]

Builds Lite0 (ImageNet weights, offline) and converts it to TFLite fp32/int8 and ONNX fp32/int8, calibrated
and gated on scikit-image's bundled photos. The parity gate is kept permissive here (``keep_failed=True``):
a file that misses it is still measured and the record says which did. Then:

1. ``pick`` on the four files, judged against the float file on ``--check-crops`` random crops (scale, position,
   flip; ``_models.photo_crops``, seed ``--check-seed``) of scikit-image's colour photos - new framings, not
   the calibration images themselves, though of the same photos (no other offline photos exist) - by the convert
   gate's rules: flips among
   decisive images (the float file's top-1 leads by >= 0.2) with a one-sided 95 % bound, within 1 pp. Every
   candidate's median (all timed side by side in one worker process), each row's gate figures, the check
   set's size and decisive count, and the pick. 1 pp is verified only by 299 or more decisive images with no
   flip; with fewer the pick says it is unverified and how many more would settle it.
2. In this process, in alternating blocks (first call of each block dropped): the pick through
   ``Runtime.from_deploy(...).infer``, ``Runtime.infer`` of every candidate, the bare engine loop of every
   candidate (``set_tensor/invoke/get_tensor``, ``session.run``, ``request.infer``), and the naive choice
   (the TFLite int8 file, default threads). Ratios: pick / fastest bare loop (goal <= 1.02), naive / pick
   (the gain), and ``infer`` / bare per candidate (goal <= 1.05).
Writes benchmarks/results/pick.json with the command, the machine and its load average.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
GATE_FIGURES = ("gate", "drop_pp", "bound_pp", "decisive", "flips", "flip_bounds", "agreement", "top5_overlap",
                "mean_kl", "evidence")  # each row's judgement against the float file


def lite0_files(cache: Path, photos: Path) -> tuple[list[Path], list[dict[str, Any]]]:
    """The four Lite0 files (converted once, then cached) and the conversion report's rows."""
    out = cache / "lite0_224"
    report = out / "convert_report.json"
    if not report.exists():
        from edgeclf.conversion import convert
        from edgeclf.models import build, preprocess_for
        src = cache / "lite0_224.keras"
        cache.mkdir(parents=True, exist_ok=True)
        if not src.exists():
            build("efficientnet_lite0", 1000, 224, "imagenet").save(src)
        pre = preprocess_for("efficientnet_lite0", 224)
        from edgeclf.errors import ConversionError
        try:
            convert(src, to="tflite,onnx", quant="fp32,int8", calib=photos, check=photos, mean=pre.mean,
                    std=pre.std, color=pre.color, resize=pre.resize, out=out, keep_failed=True, verbose=False)
        except ConversionError as exc:  # a file that missed the gate is kept and measured all the same
            print(f"conversion: {exc}", file=sys.stderr)
    rows = json.loads(report.read_text())["results"]
    return [Path(r["path"]) for r in rows if r.get("path")], rows


def isa_flags() -> list[str]:
    """The vector-instruction flags that decide which kernels the engines use (AVX2, AVX-512, VNNI, BF16, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx2", "avx512", "avx_vnni", "amx", "fma")))


def bare_loop(path: Path, backend: str, threads: int, x: np.ndarray) -> Callable[[], Any]:
    """The engine alone on ``x``: no edgeclf code in the timed call."""
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        i_in, i_out = interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]

        def call() -> Any:
            interp.set_tensor(i_in, x)
            interp.invoke()
            return interp.get_tensor(i_out)
        return call
    if backend == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: x}
        return lambda: sess.run(None, feed)
    import openvino as ov
    core = ov.Core()
    req = core.compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                "INFERENCE_PRECISION_HINT": "f32"}).create_infer_request()
    return lambda: req.infer({0: x}, share_inputs=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=150, help="timed calls per candidate in the pick")
    ap.add_argument("--rounds", type=int, default=15, help="rounds of the in-process comparison")
    ap.add_argument("--per-round", type=int, default=10)
    ap.add_argument("--check-crops", type=int, default=400, help="photo crops the pick judges the files on")
    ap.add_argument("--check-seed", type=int, default=2,
                    help="seed of the crops (the tests and convert_sizes.py use 0 and 1)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "pick.json")
    args = ap.parse_args()

    import skimage
    from _models import photo_crops
    from edgeclf import Runtime
    from edgeclf.benchmark.alternate import alternate, summary
    from edgeclf.benchmark.pick import pick, sample_paths
    from edgeclf.fileio import atomic_write_text

    photos = Path(skimage.__file__).parent / "data"
    cache = HERE / "results" / "cache"
    load_before = os.getloadavg()
    files, conversion = lite0_files(cache, photos)
    check = photo_crops(cache / f"pick_check_{args.check_crops}_seed{args.check_seed}", args.check_crops,
                        seed=args.check_seed)
    result = pick(files, device="cpu", samples=check, runs=args.runs, deploy=cache / "lite0_224" / "deploy.json",
                  progress=False)
    if result.picked is None:
        raise SystemExit(result.message)

    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    loops: dict[str, Callable[[], Any]] = {}
    rows = [r for r in result.rows if r.get("latency_ms")]
    for r in rows:
        key = f"{Path(r['model']).name}|{r['backend']}|{r['threads']}"
        rt = Runtime(r["model"], num_threads=r["threads"], backend=r["backend"])
        x = rt.preprocess(frame)
        loops[f"infer|{key}"] = lambda rt=rt, x=x: rt.infer(x)
        loops[f"bare|{key}"] = bare_loop(Path(r["model"]), r["backend"], r["threads"], x)
    chosen = Runtime.from_deploy(cache / "lite0_224" / "deploy.json")
    x = chosen.preprocess(frame)
    loops["pick"] = lambda: chosen.infer(x)
    naive_file = next(r["model"] for r in rows if r["format"] == "tflite" and r["quant"] == "int8")
    naive = Runtime(naive_file)
    xn = naive.preprocess(frame)
    loops["naive"] = lambda: naive.infer(xn)
    times = alternate(loops, args.rounds, args.per_round, warmup=5)
    med = {k: statistics.median(v) for k, v in times.items()}
    fastest_bare = min((k for k in med if k.startswith("bare|")), key=med.get)
    overhead = {k.split("|", 1)[1]: round(med[k] / med["bare|" + k.split("|", 1)[1]], 4)
                for k in med if k.startswith("infer|")}
    record = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "model": "efficientnet_lite0, ImageNet weights, 224 px",
        "calibration_images": f"{len(sample_paths(photos))} scikit-image photos (int8 ranges and the convert gate)",
        "check_images": {"count": result.check["images"], "decisive": result.check["decisive"],
                         "margin": result.check["margin"],
                         "source": f"{args.check_crops} random crops (seed {args.check_seed}) of scikit-image's "
                                   "colour photos (new framings of photos the int8 ranges were calibrated on, not those images)"},
        "files_in": str((cache / "lite0_224").relative_to(HERE.parent)),
        "conversion": [{**{k: c.get(k) for k in ("format", "quant", "kept", "parity", "notes") if k in c},
                        "file": Path(c["path"]).name if c.get("path") else None} for c in conversion],
        "conversion_note": "converted with keep_failed=True: the parity gate is being reworked; a file that "
                           "missed it is still measured (see each file's 'parity' above)",
        "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        "max_drop_pp": result.max_drop,
        "pick": {**{k: result.picked.get(k) for k in ("backend", "threads", "quant", "latency_ms", *GATE_FIGURES)},
                 "model": Path(result.picked["model"]).name},
        "pick_message": result.message.replace(str(HERE.parent) + "/", ""),
        "candidates": [{**{k: r.get(k) for k in ("backend", "threads", "quant", "status", "latency_ms", *GATE_FIGURES)},
                        "model": Path(r["model"]).name} for r in result.rows],
        "in_process_median_ms": {k: round(v, 4) for k, v in med.items()},
        "in_process_p90_ms": {k: summary(v)["p90"] for k, v in times.items()},
        "fastest_bare": fastest_bare,
        "pick_over_fastest_bare": round(med["pick"] / med[fastest_bare], 4),
        "naive_file": Path(naive_file).name, "naive_over_pick": round(med["naive"] / med["pick"], 4),
        "infer_over_bare": overhead,
        "targets": {"pick_over_fastest_bare": 1.02, "infer_over_bare": 1.05},
        "machine": result.machine,
        "cpu_flags": isa_flags(),
    }
    record["met"] = {"pick_over_fastest_bare": record["pick_over_fastest_bare"] <= 1.02,
                     "infer_over_bare": all(v <= 1.05 for v in overhead.values())}
    print(json.dumps(record, indent=2))
    atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
