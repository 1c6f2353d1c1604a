"""edgeclf bench: records, files written, failed/unavailable rows, --compare, --data accuracy, run folders, TF-free."""
from __future__ import annotations

import csv
import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeclf.benchmark.session import bench, compare, run_worker
from edgeclf.cli import main

FAST = ["--runs", "20", "--warmup", "2"]
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None  # absent from a runtime-only install
LATENCY_KEYS = ["mean", "std", "min", "p50", "p90", "p99", "max"]
REQUIRED = ["model", "format", "device", "status", "size_bytes", "gzip_bytes", "init_ms", "first_ms", "latency_ms",
            "fps", "peak_rss_mb", "backend", "threads", "machine"]


def run_cli(*args: str) -> "object":
    return CliRunner().invoke(main, ["bench", *map(str, args)])


@pytest.fixture(scope="module")
def measured(tmp_path_factory, foreign_models):
    """One bench of the float/uint8 TFLite and the ONNX fixtures with every output file."""
    out = tmp_path_factory.mktemp("bench")
    m = foreign_models
    res = run_cli(m["float"], m["uint8"], m["onnx"], "--labels", m["labels"], "--mean", "127.5", "--std", "127.5",
                  *FAST, "--batch", "1,4", "--threads", "1", "--json", out / "b.json", "--csv", out / "b.csv",
                  *(["--plot", out / "b.png"] if HAS_MATPLOTLIB else []))
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "b.json").read_text()), res


def test_json_schema_and_figures(measured, foreign_models):
    _, records, res = measured
    assert [r["model"] for r in records] == [str(foreign_models[k]) for k in ("float", "uint8", "onnx")]
    assert [r["format"] for r in records] == ["tflite", "tflite", "onnx"]
    assert [r["quant"] for r in records] == ["float", "int8", "float"]
    for r in records:
        assert set(REQUIRED) <= r.keys()
        assert r["status"] == "passed" and r["device"] == "cpu" and r["threads"] == 1
        data = Path(r["model"]).read_bytes()
        assert r["size_bytes"] == len(data) and r["gzip_bytes"] == len(gzip.compress(data, 9, mtime=0))
        for coder, module in (("zstd", "zstandard"), ("brotli", "brotli")):  # installed with [train], not on devices
            size = r[f"{coder}_bytes"]
            assert (0 < size < len(data)) if importlib.util.find_spec(module) else size is None
        lat = r["latency_ms"]
        assert list(lat) == LATENCY_KEYS
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert r["runs"] == 20 and r["warmup_runs"] == 2
        assert r["fps"] == pytest.approx(1000 / lat["mean"], rel=1e-3)
        assert r["init_ms"] > 0 and r["first_ms"] > 0
        assert 0 < r["baseline_rss_mb"] <= r["peak_rss_mb"]
        by_batch = {t["batch"]: t for t in r["throughput"]}
        assert by_batch[4]["images_per_s"] > 0 and by_batch[1]["images_per_s"] == r["fps"]
        assert r["machine"]["cores"] == os.cpu_count()
    assert "XNNPACK" in records[0]["backend"] and "CPUExecutionProvider" in records[2]["backend"]
    assert "tiny_float.tflite" in res.output and "passed" in res.output


def test_table_fits_100_columns(measured):
    """The worst case of the default table (long names, accuracy, a comparison, a note) fits a 100-column
    terminal with no column squeezed away; --wide shows every column."""
    from rich.console import Console

    from edgeclf.benchmark.report import print_table

    _, records, _ = measured
    records = [dict(r, model=r["model"].replace("tiny", "mobilenet_v2_1.0_224"), accuracy=0.5, top5_accuracy=1.0,
                    agreement=1.0) for r in records]
    records[1]["status"] = "unavailable: no Edge TPU found"
    comparisons = [{"ratio": 1.02, "verdict": "slower"}] * len(records)
    console = Console(width=100, record=True)
    print_table(records, comparisons, console=console)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines() if not line.startswith("[1]")) <= 100  # a note soft-wraps
    header = next(line for line in text.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "quant", "device", "status", "MB", "gzip", "MB", "p50", "ms", "top-1",
                              "agree", "vs", "ref"]
    assert "unavailable [1]" in text and "1.02x" in text and "ai_edge_litert" in text
    wide = Console(width=250, record=True)
    print_table(records, comparisons, console=wide, wide=True)
    wide_text = wide.export_text()
    assert all(c in wide_text for c in ("init ms", "img/s @4", "RSS MB", "top-5", "backend", "FPS", "zstd MB",
                                        "brotli MB"))


def test_peak_memory_is_the_workers_own(measured):
    """This test process holds TensorFlow (hundreds of MB); a worker's figure must not include it."""
    if "tensorflow" not in sys.modules:
        pytest.skip("this process holds no TensorFlow here (prebuilt fixture models)")
    rss = next(int(ln.split()[1]) / 1024 for ln in open("/proc/self/status") if ln.startswith("VmRSS:"))
    assert rss > 300
    for r in measured[1]:
        assert r["peak_rss_mb"] < 200


def test_csv_and_plot(measured):
    out, records, _ = measured
    rows = list(csv.DictReader((out / "b.csv").open()))
    assert len(rows) == len(records)
    for row, rec in zip(rows, records):
        assert float(row["latency_ms.p50"]) == rec["latency_ms"]["p50"]
        assert row["model"] == rec["model"] and row["machine.cpu"] == rec["machine"]["cpu"]
        assert float(row["throughput.b4_images_per_s"]) == rec["throughput"][1]["images_per_s"]
    if HAS_MATPLOTLIB:
        assert (out / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left by atomic writes


def test_corrupt_and_missing_files_are_failed_rows(tmp_path, foreign_models):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    res = run_cli(bad, foreign_models["float"], "--labels", foreign_models["labels"], *FAST, "--json", tmp_path / "r.json")
    assert res.exit_code == 1
    recs = json.loads((tmp_path / "r.json").read_text())
    assert recs[0]["status"].startswith("failed: ") and "bad.tflite" in recs[0]["status"]
    assert recs[1]["status"] == "passed" and recs[1]["latency_ms"]["p50"] > 0
    assert recs[0]["latency_ms"] is None and recs[0]["fps"] is None
    assert "1 of 2 rows failed" in res.output
    # a missing file is the library's row too, but the command stops first, as every command does
    missing = bench([tmp_path / "missing.onnx"], runs=2, warmup=0, progress=False)
    assert "no such file" in missing[0]["status"]


def test_unavailable_devices(tmp_path, foreign_models):
    m = foreign_models
    res = run_cli(m["float"], m["onnx"], "--labels", m["labels"], "--device", "gpu,coral,jetson", *FAST,
                  "--json", tmp_path / "u.json")
    assert res.exit_code == 1
    recs = json.loads((tmp_path / "u.json").read_text())
    assert [(Path(r["model"]).suffix, r["device"]) for r in recs] == [
        (".tflite", "gpu"), (".tflite", "coral"), (".tflite", "jetson"), (".onnx", "gpu"), (".onnx", "coral"),
        (".onnx", "jetson")]
    for r in recs:
        assert r["latency_ms"] is None and r["backend"] is None  # never a CPU figure under another name
    assert all(r["status"].startswith("unavailable: ") for r in recs if r["device"] != "coral")
    assert "onnxruntime-gpu" in recs[3]["status"] and "TensorRT" in recs[5]["status"]
    # the float .tflite is not compiled for the Edge TPU: that is the file's fault, reported as such
    assert "not compiled for the Edge TPU" in recs[1]["status"]

    res = run_cli(m["onnx"], "--labels", m["labels"], "--device", "gpu,jetson", *FAST)
    assert res.exit_code == 1 and "none of the requested devices (gpu, jetson) was available" in res.output
    res = run_cli(m["onnx"], "--device", "cpu,gpu", *FAST, "--labels", m["labels"], "--json", tmp_path / "v.json")
    assert res.exit_code == 0, res.output
    cpu, gpu = json.loads((tmp_path / "v.json").read_text())
    assert cpu["status"] == "passed" and gpu["status"].startswith("unavailable")


def test_compare(tmp_path, measured, foreign_models):
    _, records, _ = measured
    ref = [dict(r, latency_ms=dict(r["latency_ms"], p50=r["latency_ms"]["p50"] / 1.5)) for r in records]
    rows = compare(records, ref, 0.10)
    assert [c["verdict"] for c in rows] == ["slower"] * 3 and rows[0]["ratio"] == pytest.approx(1.5, rel=1e-3)
    assert [c["verdict"] for c in compare(records, ref, 0.6)] == ["ok"] * 3
    assert compare(records, [], 0.1)[0]["verdict"] == "no reference"

    m = foreign_models
    fast_ref = tmp_path / "fast.json"
    fast_ref.write_text(json.dumps([dict(records[0], latency_ms=dict(records[0]["latency_ms"], p50=1e-6))]))
    res = run_cli(m["float"], "--labels", m["labels"], *FAST, "--compare", fast_ref)
    assert res.exit_code == 1 and "the reference" in res.output and "tolerance 10%" in res.output
    slow_ref = tmp_path / "slow.json"
    slow_ref.write_text(json.dumps([dict(records[0], latency_ms=dict(records[0]["latency_ms"], p50=1e6))]))
    res = run_cli(m["float"], "--labels", m["labels"], *FAST, "--compare", slow_ref, "--tolerance", "0.05")
    assert res.exit_code == 0, res.output
    assert "vs ref" in res.output
    (tmp_path / "junk.json").write_text("{}")
    res = run_cli(m["float"], "--compare", tmp_path / "junk.json")
    assert res.exit_code == 1 and "not an 'edgeclf bench --json' file" in res.output


@pytest.mark.parametrize("args", [["--runs", "0"], ["--threads", "-1"], ["--device", "tpu"], ["--batch", "0"],
                                  ["--max-secs", "0"], ["--tolerance", "-1"]])
def test_usage_errors(args, foreign_models):
    res = run_cli(foreign_models["float"], *args)
    assert res.exit_code == 2, res.output


def test_max_secs_caps_the_runs(tmp_path, foreign_models):
    res = run_cli(foreign_models["float"], "--runs", "100000000", "--warmup", "0", "--max-secs", "0.3",
                  "--json", tmp_path / "t.json")
    assert res.exit_code == 0, res.output
    (rec,) = json.loads((tmp_path / "t.json").read_text())
    assert 1 <= rec["runs"] < 100000000 and rec["warmup_runs"] == 0 and rec["warmup_ms"] is None


@pytest.mark.parametrize("kwargs", [{"runs": 0}, {"threads": -2}, {"device": "tpu"}, {"batch": (0,)},
                                    {"max_secs": 0}, {"warmup": -1}])
def test_api_rejects_bad_arguments(kwargs, foreign_models):
    from edgeclf import EdgeclfError
    from edgeclf.benchmark.session import bench
    with pytest.raises(EdgeclfError):
        bench([foreign_models["float"]], progress=False, **kwargs)


def _dataset(root: Path, n: int = 16) -> None:
    rng = np.random.default_rng(3)
    for i in range(n):
        cls = ("cat", "dog", "bird", "fish")[i % 4]
        (root / cls).mkdir(parents=True, exist_ok=True)
        img = cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (40, 40), interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(root / cls / f"{i}.png"), img)


def test_data_accuracy_and_agreement(tmp_path, foreign_models, tiny_tflite):
    from edgeclf import Runtime
    data = tmp_path / "data"
    _dataset(data)
    m = foreign_models
    res = run_cli(tiny_tflite, m["int8"], "--data", data, *FAST, "--json", tmp_path / "a.json",
                  "--labels", m["labels"], "--mean", "127.5", "--std", "127.5", "--resize", "stretch")
    assert res.exit_code == 0, res.output
    recs = json.loads((tmp_path / "a.json").read_text())
    files = sorted(data.rglob("*.png"))
    preds = {}
    for path in (tiny_tflite, m["int8"]):
        rt = Runtime(path, labels=m["labels"], mean=127.5, std=127.5, resize="stretch")
        preds[path] = [[p.label for p in rt.predict(f, top_k=5)] for f in files]
    for rec, path in zip(recs, (tiny_tflite, m["int8"])):
        truth = [f.parent.name for f in files]
        assert rec["data_images"] == len(files)
        assert rec["accuracy"] == pytest.approx(np.mean([p[0] == t for p, t in zip(preds[path], truth)]), abs=1e-6)
        assert rec["top5_accuracy"] == 1.0  # four classes: always within the top five
        same = np.mean([a[0] == b[0] for a, b in zip(preds[path], preds[tiny_tflite])])
        assert rec["agreement"] == pytest.approx(same, abs=1e-6) and rec["agreement_with"] == str(tiny_tflite)
    assert recs[0]["quant"] == "fp32" and recs[1]["quant"] == "int8"
    assert "top-1" in res.output and "agree" in res.output


def test_data_folder_without_images_is_one_error(tmp_path, foreign_models):
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "notes.txt").write_text("no images here")
    res = run_cli(foreign_models["float"], "--data", tmp_path / "empty", *FAST)
    assert res.exit_code == 1
    assert res.output.strip().splitlines()[-1].startswith("edgeclf: error: ") and "has no images" in res.output


def test_worker_crash_becomes_failed_row(foreign_models):
    result = run_worker({"model": str(foreign_models["float"])}, timeout=60)  # no 'runs': the worker dies
    assert result["status"].startswith("failed: the measuring process exited with code 1")
    assert "KeyError" in result["status"]


TF_MODULES = ("tensorflow", "tf_keras", "keras", "tf2onnx", "tensorflow_model_optimization")


def test_tflite_and_onnx_bench_never_imports_tensorflow(tmp_path, foreign_models):
    m = foreign_models
    code = f"""
import json, sys
from click.testing import CliRunner
from edgeclf.cli import main
from edgeclf.benchmark.worker import measure
res = CliRunner().invoke(main, ["bench", {str(m['float'])!r}, {str(m['onnx'])!r}, "--labels", {str(m['labels'])!r},
                                "--runs", "5", "--warmup", "1", "--json", {str(tmp_path / 'tf.json')!r}])
assert res.exit_code == 0, res.output
worker = measure({{"model": {str(m['uint8'])!r}, "device": "cpu", "threads": None, "runs": 5, "warmup": 1,
                  "max_secs": 5, "batch": [1], "runtime": {{}}, "data": None}})
assert worker["status"] == "passed", worker
print(json.dumps(sorted(k for k in sys.modules if k.split(".")[0] in {TF_MODULES!r})))
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_plot_without_matplotlib_is_one_clear_error(tmp_path, foreign_models):
    code = f"""
import sys
sys.modules["matplotlib"] = None  # as on a runtime-only install
from click.testing import CliRunner
from edgeclf.cli import main
res = CliRunner().invoke(main, ["bench", {str(foreign_models['float'])!r}, "--plot", {str(tmp_path / 'p.png')!r}])
print(res.exit_code)
print(res.output)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "1" and lines[-1].startswith("edgeclf: error: --plot needs matplotlib")
    assert "pip install matplotlib" in lines[-1] and not (tmp_path / "p.png").exists()


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory, keras_model):
    """A training run folder as edgeclf train leaves it: model.keras, metadata.json, calib.npz."""
    from edgeclf.artifact import Metadata, Preprocess
    run = tmp_path_factory.mktemp("runs") / "tiny"
    run.mkdir()
    keras_model.save(str(run / "model.keras"))
    meta = Metadata(labels=["cat", "dog", "bird", "fish"], output="probabilities", source="tests",
                    preprocess=Preprocess(input_size=(32, 32), mean=127.5, std=127.5, resize="stretch"))
    (run / "metadata.json").write_text(meta.to_json())
    rng = np.random.default_rng(0)
    np.savez(run / "calib.npz", images=rng.integers(0, 256, (16, 32, 32, 3), dtype=np.uint8),
             labels=rng.integers(0, 4, 16))
    np.savez(run / "test.npz", images=rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),  # the gate's images
             labels=rng.integers(0, 4, 40))
    return run


def test_run_folder_converts_to_every_format(tmp_path, run_folder):
    data = tmp_path / "data"
    _dataset(data, 8)
    res = run_cli(run_folder, "--device", "cpu,coral", *FAST, "--data", data, "--json", tmp_path / "run.json")
    recs = json.loads((tmp_path / "run.json").read_text())
    rows = {(r["format"], r["quant"], r["device"]): r for r in recs}
    assert {f for f, _, _ in rows} == {"tflite", "onnx", "edgetpu", "tensorrt"}
    for fmt in ("tflite", "onnx"):
        for q in ("fp32", "int8"):
            cpu = rows[(fmt, q, "cpu")]
            # fp32 passes as numerically equivalent; a random-weight model's int8 file may be unverifiable on 40
            # noise images (too few decisive ones): kept, measured, and its row says why
            assert cpu["status"] == "passed" or (q == "int8" and cpu["status"].startswith("failed accuracy check")
                                                  and "could not be verified" in cpu["status"]), cpu["status"]
            assert Path(cpu["model"]).is_file() and Path(cpu["model"]).parent == run_folder / "bench"
            assert cpu["source"] == str(run_folder) and cpu["latency_ms"]["p50"] > 0
            assert rows[(fmt, q, "coral")]["status"].startswith("skipped: ")
    assert rows[("tflite", "fp32", "cpu")]["agreement"] == 1.0
    assert 0 <= rows[("onnx", "int8", "cpu")]["agreement"] <= 1
    tpu = rows[("edgetpu", "int8", "coral")]
    assert tpu["status"].startswith("unavailable: ") and "edgetpu_compiler" in tpu["status"]
    assert rows[("tensorrt", "fp32", "cpu")]["status"] == "skipped: TensorRT files run on jetson"
    unverified = [r for r in recs if r["status"].startswith("failed accuracy check")]
    assert res.exit_code == (1 if unverified else 0), res.output  # a file the gate did not pass fails the run


def test_run_folder_conversion_failure_rows(tmp_path, run_folder):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.keras").write_bytes(b"not a keras file")
    (broken / "metadata.json").write_text((run_folder / "metadata.json").read_text())
    res = run_cli(broken, *FAST, "--quant", "fp32", "--json", tmp_path / "b.json")
    assert res.exit_code == 1
    recs = json.loads((tmp_path / "b.json").read_text())
    measured = [r for r in recs if not r["status"].startswith("skipped")]
    assert {r["format"] for r in measured} == {"tflite", "onnx"}
    assert all(r["status"].startswith("conversion failed: ") and "model.keras" in r["status"] for r in measured)


def test_data_classes_map_to_labels_by_folder_name_never_by_guess():
    from edgeclf.data import class_map as _class_map
    from edgeclf.errors import DataError

    labels = ["T-shirt/top", "Trouser", "Bag"]
    assert _class_map(["Bag", "T-shirt_top", "Trouser"], labels, "m").tolist() == [2, 0, 1]
    assert _class_map(["cat", "dog"], ["0", "1"], "m").tolist() == [0, 1]  # a model without names: by position
    with pytest.raises(DataError, match="not among the model's 3 labels"):
        _class_map(["Bag", "Shirt", "Trouser"], labels, "m")
