"""bench --pick judges quality as the convert gate does: near-tie flips do not count, decisive flips and lost
accuracy do, each with a 95 % bound; the message states the evidence and when the bound does not confirm it.

The models are three colour classifiers built with onnx.helper (fixture_models.colour_classifier_onnx): the
reference, ``near`` (favours the fourth class a little more: it flips only images the reference calls by a
hair) and ``bad`` (the red and green answers swapped: it flips clear answers). The check images are 45
saturated colours (decisive: the reference's top-1 leads by 0.9) and 20 faint red tints (near-ties).
"""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf import Runtime
from edgeclf.benchmark.pick import choose, pick, score, within
from edgeclf.evaluation.parity import needed, rate_bounds
from fixture_models import COLOUR_B, COLOUR_W, colour_classifier_onnx

pytest.importorskip("onnx", reason="the colour classifiers are built with onnx.helper")
RUNTIME = dict(mean=127.5, std=127.5)
DECISIVE, NEAR_TIES = 45, 20  # 20: enough for a numerically equivalent pass on the near-ties alone


def _images() -> list[tuple[str, np.ndarray]]:
    """(class folder, BGR frame): saturated blue/green/red, then red tints the reference calls red by a hair."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(DECISIVE):
        px = np.full(3, rng.integers(0, 40))
        px[i % 3] = rng.integers(215, 256)
        out.append((("blue", "green", "red")[i % 3], np.full((16, 16, 3), px, np.uint8)))
    for i in range(NEAR_TIES):
        red = round(128 + 127.5 * (0.18 + 0.04 * i / (NEAR_TIES - 1)))
        out.append(("red", np.full((16, 16, 3), (128, 128, red), np.uint8)))
    return out


@pytest.fixture(scope="module")
def colour(tmp_path_factory) -> dict:
    """The three files, the check images as a samples folder and as class folders, and each file's probabilities."""
    d = tmp_path_factory.mktemp("colour")
    files = {"ref": d / "ref.onnx", "near": d / "near.onnx", "bad": d / "bad.onnx"}
    colour_classifier_onnx(files["ref"])
    colour_classifier_onnx(files["near"], b=COLOUR_B + np.array([0, 0, 0, 0.2], np.float32))
    colour_classifier_onnx(files["bad"], w=COLOUR_W[:, [1, 0, 2, 3]])
    (d / "labels.txt").write_text("red\ngreen\nblue\ngrey\n")
    images = _images()
    for i, (cls, img) in enumerate(images):
        for folder in (d / "samples", d / "classes" / cls):
            folder.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    probs = {}
    for name, path in files.items():
        rt = Runtime(path, **RUNTIME)
        probs[name] = np.stack([rt.probabilities(img) for _, img in images])
    truth = np.array([("red", "green", "blue").index(cls) for cls, _ in images])
    return {"dir": d, "files": files, "probs": probs, "truth": truth}


def _rows(colour: dict, latency: dict[str, float]) -> list[dict]:
    """One loaded row per file (the reference first), timed as given (a name left out was not timed)."""
    rows = []
    for name in ("ref", "near", "bad"):
        row = {"model": str(colour["files"][name]), "backend": "onnxruntime", "device": "cpu", "threads": 1,
               "status": "passed"}
        if name in latency:
            row["latency_ms"] = {"median": latency[name]}
        rows.append(row)
    return rows


def _scored(colour: dict, max_drop: float, latency: dict[str, float], truth: np.ndarray | None = None,
            only: slice = slice(None)) -> list[dict]:
    """The rows judged against the reference by ``score`` on the check images ``only``."""
    rows = _rows(colour, latency)
    probs = {(r["model"], "onnxruntime", "cpu"): colour["probs"][n][only] for r, n in zip(rows, ("ref", "near", "bad"))}
    score(rows, probs, (rows[0]["model"], "onnxruntime", "cpu"), max_drop, "colours",
          None if truth is None else truth[only])
    return rows


@pytest.fixture(scope="module")
def picked(colour) -> object:
    """One real pick over the three files on the samples folder, bound 10 pp (29 clean decisive images verify it)."""
    f = colour["files"]
    return pick([f["ref"], f["near"], f["bad"]], device="cpu", threads=1, max_drop=10,
                samples=colour["dir"] / "samples", deploy=colour["dir"] / "deploy.json", runs=20, warmup=1,
                max_secs=20.0, progress=False, **RUNTIME)


def test_near_tie_flips_do_not_count_and_decisive_flips_do(picked):
    by = {Path(r["model"]).stem: r for r in picked.rows}
    assert picked.metric == "flips" and picked.check["images"] == DECISIVE + NEAR_TIES
    assert picked.check["decisive"] == DECISIVE and picked.reference["model"] == by["ref"]["model"]
    near, bad = by["near"], by["bad"]
    assert near["agreement"] == pytest.approx(DECISIVE / (DECISIVE + NEAR_TIES))  # plain agreement: a 31 pp "drop"
    assert (near["flips"], near["decisive"], near["drop_pp"], near["gate"]) == (0, DECISIVE, 0.0, "passed")
    assert near["bound_pp"] == pytest.approx(100 * rate_bounds(0, DECISIVE)[1], abs=0.01) and near["bound_pp"] < 10
    assert bad["flips"] == 2 * DECISIVE // 3 and bad["gate"] == "failed" and bad["drop_pp"] > 60
    assert bad["flip_bounds"][0] > 0.10 and not within(bad, 10) and within(near, 10)
    assert by["ref"]["gate"] == "passed" and by["ref"]["drop_pp"] == 0.0
    assert picked.picked is not None and Path(picked.picked["model"]).stem != "bad"
    assert "top5_overlap" in bad and bad["mean_kl"] > near["mean_kl"]


def test_a_row_whose_decisive_flips_exceed_the_bound_is_not_picked_even_when_fastest(picked):
    rows = copy.deepcopy(picked.rows)
    by = {Path(r["model"]).stem: r for r in rows}
    by["bad"]["latency_ms"]["median"] = 1e-6
    i, message = choose(rows, 10)
    assert Path(rows[i]["model"]).stem != "bad" and message.startswith("picked")
    by["near"]["latency_ms"]["median"] = 2e-6  # faster than the reference, slower than bad: near-ties only
    i, message = choose(rows, 10)
    assert rows[i] is by["near"]
    assert f"0 of {DECISIVE} decisive images flip, 95 % bound 6.44 %), within the 10 pp bound at 95 % confidence" \
        in message and "unverified" not in message


def test_the_pick_writes_its_evidence_into_deploy_json(picked, colour):
    record = json.loads((colour["dir"] / "deploy.json").read_text())
    assert record["measured"]["gate"] == picked.picked["gate"] and record["measured"]["evidence"]
    assert record["check"]["decisive"] == DECISIVE and record["max_drop_pp"] == 10


def test_an_unverified_pick_says_its_bound_exceeds_max_drop_and_what_would_settle_it(colour):
    rows = _scored(colour, 1.0, {"ref": 2.0, "near": 1.0, "bad": 0.5})
    near = rows[1]
    assert (near["gate"], near["drop_pp"], near["flips"]) == ("unverified", 0.0, 0)
    i, message = choose(rows, 1.0)
    assert i == 1 and rows[2]["gate"] == "failed"
    more = needed(0.01) - DECISIVE
    assert f"unverified: its 95 % bound 6.44 pp exceeds the 1 pp bound ({more} more decisive images with no flip" \
        in message
    assert more == 254


def test_nothing_is_picked_when_no_timed_file_meets_the_bound(colour):
    rows = _scored(colour, 10.0, {"bad": 0.5})  # the reference and near loaded but were not timed
    i, message = choose(rows, 10.0)
    assert i is None
    assert message.startswith("no candidate is within 10 pp of the reference (the closest, bad.onnx on onnxruntime")
    assert f"gate failed: 30 of {DECISIVE} decisive images flip" in message and message.endswith("nothing picked")


def test_without_decisive_images_only_an_equivalent_file_can_be_judged(colour):
    near_ties = slice(DECISIVE, None)
    rows = _scored(colour, 10.0, {"ref": 2.0, "near": 1.0}, only=near_ties)
    ref, near = rows[0], rows[1]
    assert near["decisive"] == 0 and near["drop_pp"] is None and near["gate"] == "unverified"
    assert ref["drop_pp"] == 0.0 and ref["evidence"].startswith("numerically equivalent")
    i, message = choose(rows, 10.0)
    assert i == 0 and f"1 faster candidate(s) could not be judged (none of the {NEAR_TIES} check images is decisive" \
        in message
    i, message = choose(_scored(colour, 10.0, {"near": 1.0}, only=near_ties), 10.0)
    assert i is None and message.startswith(f"no candidate could be judged (none of the {NEAR_TIES} check images")


def test_with_labels_the_accuracy_drop_is_the_measure_and_counts_lost_near_ties(colour):
    rows = _scored(colour, 10.0, {"ref": 2.0, "near": 1.0, "bad": 0.5}, truth=colour["truth"])
    ref, near, bad = rows
    assert ref["accuracy_drop"] == 0.0 and ref["labelled"] == DECISIVE + NEAR_TIES
    n = DECISIVE + NEAR_TIES
    # the labels say the reference was right on the tints, so near's flips there are lost accuracy
    assert near["accuracy_drop"] == round(NEAR_TIES / n, 4)
    assert near["drop_pp"] == pytest.approx(100 * NEAR_TIES / n, abs=0.01)
    assert near["flips"] == 0 and near["drop_bounds"][0] > 0.10 and near["gate"] == "failed"
    assert bad["drop_pp"] == pytest.approx(100 * (2 * DECISIVE // 3 + NEAR_TIES) / n, abs=0.01)
    assert bad["gate"] == "failed"
    i, message = choose(rows, 10.0)
    assert i == 0 and f"accuracy 1.0000 -> 1.0000 on {n} labelled images, drop 0.00 pp" in message


def test_labelled_picks_say_when_the_accuracy_bound_does_not_confirm_them(colour):
    rows = _scored(colour, 1.0, {"ref": 2.0, "near": 1.0, "bad": 0.5}, truth=colour["truth"])
    assert [r["gate"] for r in rows] == ["passed", "failed", "failed"]
    i, message = choose(rows, 1.0)  # 65 labelled images bound a drop of 0 at 4.5 pp only; ref passes as itself
    assert i == 0 and "its 95 % bound 4.5" in message and "but the gate passes it: numerically equivalent" in message
    unverified = {**rows[0], "gate": "unverified"}
    i, message = choose([unverified], 1.0)
    assert message.endswith(f"unverified: its 95 % bound {unverified['bound_pp']:g} pp exceeds the 1 pp bound (about "
                            f"{needed(0.01) - DECISIVE - NEAR_TIES} more labelled images with no further loss would "
                            "settle it)")


def test_a_file_that_changes_clear_answers_fails_even_when_the_labels_favour_it(colour):
    """As in the convert gate, either check failing fails the file: here the labels swap red and green, so bad
    "gains" accuracy while flipping two thirds of the decisive images."""
    swapped = np.choose(colour["truth"], [1, 0, 2, 3])
    rows = _scored(colour, 10.0, {"ref": 2.0, "near": 1.0, "bad": 0.5}, truth=swapped)
    bad = rows[2]
    assert bad["drop_pp"] < 0 and bad["drop_bounds"][1] < 0.10 and bad["flip_bounds"][0] > 0.10
    assert bad["gate"] == "failed" and not within(bad, 10.0)
    i, _ = choose(rows, 10.0)
    assert i == 1  # near: no decisive flip, no accuracy lost


def test_gate_bounds_hold_for_thousands_of_images():
    """Exact big-integer binomial terms overflowed a float past about a thousand images (labelled class folders)."""
    lo, hi = rate_bounds(1200, 3000)
    assert 0.38 < lo < 0.4 < hi < 0.42
    assert rate_bounds(5, 5000)[1] == pytest.approx(0.0021014, abs=1e-6)
    n = needed(0.01, events=1)
    assert rate_bounds(1, n)[1] <= 0.01 < rate_bounds(1, n - 1)[1] and n == 473
    scipy_stats = pytest.importorskip("scipy.stats")
    for k, n in [(3, 150), (40, 2500), (1200, 3000)]:
        lo, hi = rate_bounds(k, n)
        assert lo == pytest.approx(scipy_stats.beta.ppf(0.05, k, n - k + 1), abs=1e-9)
        assert hi == pytest.approx(scipy_stats.beta.ppf(0.95, k + 1, n - k), abs=1e-9)


def test_pick_imports_no_training_stack():
    """The pick and its worker judge with the gate's statistics on an on-device install: no TensorFlow, and not
    the conversion layer."""
    code = ("import sys, edgeclf.benchmark.pick, edgeclf.benchmark.pick_worker; "
            "print([m for m in ('tensorflow', 'tf_keras', 'tf2onnx', 'edgeclf.conversion', 'edgeclf.training') "
            "if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"
