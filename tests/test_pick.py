"""bench --pick: the bound, nothing picked, failing rows, deploy.json into Runtime, and the OpenVINO backend
(how quality is judged: test_pick_quality.py)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edgeclf import EdgeclfError, Runtime
from edgeclf.benchmark.pick import PickResult, choose, pick, within
from edgeclf.cli import main
from edgeclf.runtime.deploy import write_deploy

FAST = dict(runs=20, warmup=1, max_secs=20.0, progress=False)
needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason='openvino is not installed (pip install "edgeclf[openvino]")')


def options(m) -> dict:
    return dict(labels=m["labels"], mean=127.5, std=127.5)


@pytest.fixture(scope="module")
def picked(tmp_path_factory, foreign_models):
    """One pick over the float and uint8 TFLite files, a broken .onnx and the ONNX file, on cpu and gpu."""
    d = tmp_path_factory.mktemp("pick")
    broken = d / "broken.onnx"
    broken.write_bytes(b"\x08\x07" + b"not a graph" * 10)
    m = foreign_models
    result = pick([m["float"], m["uint8"], broken, m["onnx"]], device="cpu,gpu", threads=[1, 2],
                  deploy=d / "deploy.json", **options(m), **FAST)
    return d, result


def test_rows_failing_and_unavailable_do_not_stop_the_rest(picked, foreign_models):
    _, result = picked
    by = {(r["model"].rsplit("/", 1)[-1], r["backend"], r["device"], r["threads"]): r for r in result.rows}
    backends = ["onnxruntime", "openvino"] if importlib.util.find_spec("openvino") else ["onnxruntime"]
    for b in backends:
        assert by[("broken.onnx", b, "cpu", None)]["status"].startswith("failed:")
        assert by[("tiny.onnx", b, "gpu", None)]["status"].startswith("unavailable:")
        for t in (1, 2):
            row = by[("tiny.onnx", b, "cpu", t)]
            assert row["status"] == "passed" and row["latency_ms"]["median"] > 0 and row["agreement"] == 1.0
            # the same net in another format: numerically equivalent, so judged although no frame is decisive
            assert row["gate"] == "passed" and row["drop_pp"] == 0.0 and row["decisive"] == 0
    gpu = [r for r in result.rows if r["device"] == "gpu" and "broken" not in r["model"]]
    assert gpu and all(r["status"].startswith("unavailable") and "latency_ms" not in r for r in gpu)
    assert by[("tiny_uint8.tflite", "litert", "cpu", 2)]["status"] == "passed"
    assert result.reference["model"] == str(foreign_models["float"])


def test_pick_is_the_fastest_within_the_bound(picked):
    _, result = picked
    timed = [r for r in result.rows if r.get("latency_ms")]
    assert result.picked is min((r for r in timed if within(r, result.max_drop)),
                                key=lambda r: r["latency_ms"]["median"])
    judged = [i for i, r in enumerate(result.rows) if r.get("latency_ms") and r.get("drop_pp") is not None]
    assert result.front[0] == min(judged, key=lambda i: result.rows[i]["latency_ms"]["median"])
    assert result.check == {"images": 64, "source": "synthetic frames (seeded blurred noise)", "margin": 0.2,
                            "decisive": 0}
    assert "the check images are 64 synthetic frames" in result.message  # the tiny net is decisive on none


def _row(model: str, ms: float, drop: float, gate: str) -> dict:
    return {"model": model, "backend": "litert", "device": "cpu", "threads": 1, "status": "passed",
            "latency_ms": {"median": ms}, "drop_pp": drop, "gate": gate, "evidence": f"{model}'s evidence"}


def test_no_candidate_meets_the_bound():
    rows = [_row("a_int8.tflite", 1.0, 3.0, "unverified"), _row("b_int8.onnx", 0.5, 5.0, "failed")]
    i, message = choose(rows, 1.0)
    assert i is None
    assert message == ("no candidate is within 1 pp of the reference (the closest, a_int8.tflite on litert, drops "
                       "3 pp, gate unverified: a_int8.tflite's evidence): nothing picked")


def test_cli_exits_non_zero_and_writes_no_deploy_when_nothing_is_picked(tmp_path, monkeypatch, foreign_models):
    rows = [{**_row("a.tflite", 1.0, 10.0, "failed"), "latency_ms": {"median": 1.0, "p90": 1.1}, "flips": 3,
             "decisive": 30, "bound_pp": 24.0}]
    empty = PickResult(rows, "flips", {"model": "f.tflite"}, 1.0, [0], None, "no candidate is within 1 pp",
                       {"cpu": "x", "cores_usable": 2}, {"images": 64, "decisive": 30, "margin": 0.2})
    monkeypatch.setattr(importlib.import_module("edgeclf.benchmark.pick"), "pick", lambda *a, **k: empty)  # the module,
    # not the package attribute edgeclf.benchmark.pick, which its ``pick`` function shadows
    res = CliRunner().invoke(main, ["bench", "--pick", str(foreign_models["float"]), "--json", str(tmp_path / "p.json")])
    assert res.exit_code == 1
    assert "edgeclf: no candidate is within 1 pp" in res.output
    assert json.loads((tmp_path / "p.json").read_text())["pick"] is None


def test_cli_pick_on_class_folders(tmp_path, foreign_models):
    from test_bench import _dataset
    _dataset(tmp_path / "data")
    m = foreign_models
    res = CliRunner().invoke(main, ["bench", "--pick", str(m["float"]), str(m["uint8"]), "--data", str(tmp_path / "data"),
                                    "--device", "cpu", "--threads", "1", "--runs", "20", "--warmup", "1",
                                    "--max-drop", "5", "--labels", str(m["labels"]), "--mean", "127.5", "--std", "127.5",
                                    "--json", str(tmp_path / "p.json"), "--plot", str(tmp_path / "p.png"),
                                    "--deploy", str(tmp_path / "d" / "deploy.json")])
    assert res.exit_code == 0, res.output
    out = json.loads((tmp_path / "p.json").read_text())
    assert out["metric"] == "accuracy" and out["reference"]["model"] == str(m["float"])
    assert all(r["device"] == "cpu" and r["threads"] == 1 and 0 <= r["accuracy"] <= 1 for r in out["rows"])
    assert out["check"]["images"] == 16 and all(r["labelled"] == 16 and len(r["drop_bounds"]) == 2 for r in out["rows"])
    assert all(r["drop_pp"] == round(100 * (out["reference"]["accuracy"] - r["accuracy"]), 4) for r in out["rows"])
    assert out["pick"]["drop_pp"] <= 5 and out["pick"]["gate"] != "failed"
    assert "picked" in res.output and "Pareto front" in res.output and "labelled images" in res.output
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    assert Runtime.from_deploy(tmp_path / "d" / "deploy.json").path.resolve() == Path(out["pick"]["model"]).resolve()


def test_no_float_file_to_compare_with_is_a_clear_error(foreign_models):
    with pytest.raises(EdgeclfError, match="no float file"):
        pick([foreign_models["uint8"]], device="cpu", threads=1, **options(foreign_models), **FAST)


def test_deploy_json_round_trips_into_runtime(picked, sample_images):
    d, result = picked
    record = json.loads((d / "deploy.json").read_text())
    chosen = result.picked
    assert (record["backend"], record["device"], record["threads"]) == (chosen["backend"], "cpu", chosen["threads"])
    assert not record["model"].startswith("/") and record["measured"]["latency_ms"] == chosen["latency_ms"]
    rt = Runtime.from_deploy(d / "deploy.json")
    assert str(rt.path.resolve()) == str(Path(chosen["model"]).resolve())
    assert rt.num_threads == chosen["threads"] and rt.backend == chosen["engine"]
    assert rt.labels == ["cat", "dog", "bird", "fish"]


@needs_openvino
def test_deploy_json_chooses_the_openvino_backend(tmp_path, foreign_models):
    m = foreign_models
    target = tmp_path / "sub" / "deploy.json"
    write_deploy(target, m["onnx"], "openvino", "cpu", 2, {"labels": str(m["labels"]), "mean": 127.5, "std": 127.5},
                 {"machine": {}})
    rt = Runtime.from_deploy(target)
    assert rt.backend.startswith("openvino") and rt.num_threads == 2
    assert rt._engine._compiled.get_property("INFERENCE_NUM_THREADS") == 2


@needs_openvino
def test_openvino_gives_the_same_probabilities_as_onnxruntime(foreign_models, sample_images):
    m = foreign_models
    ort = Runtime(m["onnx"], **options(m))
    ov = Runtime(m["onnx"], backend="openvino", **options(m))
    assert "CPUExecutionProvider" in ort.backend and ov.backend.startswith("openvino")
    assert [s.shape for s in ov._engine.inputs] == [s.shape for s in ort._engine.inputs]
    for img in sample_images:  # the input-buffer path (invoke)
        np.testing.assert_allclose(ov.probabilities(img), ort.probabilities(img), atol=1e-5)
    batch = np.concatenate([ort.preprocess(img) for img in sample_images])  # the whole-tensor path (run)
    np.testing.assert_allclose(ov.infer(batch)[0], ort.infer(batch)[0], atol=1e-5)
    # invoke again after run replaced the request's input tensor
    np.testing.assert_allclose(ov.probabilities(sample_images[0]), ort.probabilities(sample_images[0]), atol=1e-5)


def test_missing_openvino_is_one_line_saying_what_to_install(monkeypatch, foreign_models):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(EdgeclfError, match=r'pip install "edgeclf\[openvino\]"'):
        Runtime(foreign_models["onnx"], backend="openvino")


def test_unknown_backend_names_the_choices(foreign_models):
    with pytest.raises(EdgeclfError, match="choose from auto, litert"):
        Runtime(foreign_models["float"], backend="openvino")
