"""First contact: every command runs with only its required arguments on small inputs, in an empty folder, and a
missing optional package is one line saying what to install."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeclf.cli import main

from conftest import CLASSES


def _edgeclf(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeclf", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


@pytest.fixture
def images(tmp_path) -> Path:
    """Two small PNGs per class folder of the tiny model's classes."""
    root = tmp_path / "images"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(2):
            cv2.imwrite(str(root / name / f"{i}.png"), rng.integers(0, 256, (40, 48, 3), dtype=np.uint8))
    return root


def test_model_commands_need_only_their_arguments(tiny_tflite, images, tmp_path, monkeypatch):
    """info, predict, eval and bench with nothing but MODEL (and images/data), run in an empty folder."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    image = str(images / "cat" / "0.png")
    for args in (["info", str(tiny_tflite)], ["predict", str(tiny_tflite), image],
                 ["eval", str(tiny_tflite), str(images)], ["bench", str(tiny_tflite)]):
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (args, res.output)
    assert sorted(p.name for p in work.iterdir()) == [f"eval-{tiny_tflite.stem}"]  # eval's report folder only


def test_run_needs_only_a_source(tiny_tflite, images, tmp_path):
    """``run MODEL --source FOLDER``: no display here, so it says so in one line and writes JSON lines."""
    proc = _edgeclf("run", str(tiny_tflite), "--source", str(images / "dog"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2 and len(lines[0]["top_k"]) == len(CLASSES)  # --top-k 5, 4 classes
    assert "Traceback" not in proc.stderr


def test_serve_starts_answers_and_stops(tiny_tflite, tmp_path):
    """``serve MODEL`` (on a free port rather than 8080, which may be taken): /healthz answers, SIGTERM stops it."""
    pytest.importorskip("starlette", reason="needs the [serve] extra")
    proc = subprocess.Popen([sys.executable, "-m", "edgeclf", "serve", str(tiny_tflite), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        url = None
        deadline = time.monotonic() + 120
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "serve exited before announcing its address"
            found = re.search(r"(http://\S+:\d+)/", line)
            url = found and found.group(1)
        assert url, "no address announced"
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as resp:
            assert json.loads(resp.read()) == {"status": "ok", "camera": "none"}
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "Traceback" not in out, out


@pytest.mark.parametrize("epochs,head", [(1, 0), (2, 1), (3, 2), (10, 3)])
def test_short_runs_fine_tune_at_least_one_epoch(epochs, head):
    """The default head-only epochs are min(3, epochs - 1), so ``--epochs 1`` or ``2`` trains the whole net."""
    from edgeclf.training.settings import Settings
    assert Settings.from_flat(epochs=epochs).hparams.freeze_epochs == head


def test_train_needs_only_data_and_epochs(tmp_path):
    """``train DATA --epochs 1``: small and untrained (--limit, --img-size, --arch mobilenet_v2 --alpha 0.35,
    --weights none) only to be quick; the run folder defaults under ./runs."""
    pytest.importorskip("tf_keras", reason="needs TensorFlow (the [train] extra)")
    proc = _edgeclf("train", "digits", "--epochs", "1", "--limit", "200", "--img-size", "32", "--arch",
                    "mobilenet_v2", "--alpha", "0.35", "--weights", "none", "--batch", "64", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = Path(re.search(r"run folder: (.+)", proc.stdout).group(1).strip())
    assert (tmp_path / run).parent == tmp_path / "runs"
    history = json.loads((tmp_path / run / "metrics.json").read_text())
    assert history["test"]["samples"] > 0


BLOCK = "import sys; sys.modules[{name!r}] = None; from edgeclf.cli import main; main({args!r})"


@pytest.mark.parametrize("module,args,hint", [
    ("onnxruntime", ["predict", "{onnx}", "{image}"], "pip install 'edgeclf[onnx]'"),
    ("starlette", ["serve", "{tflite}"], "pip install 'edgeclf[serve]'"),
    ("matplotlib", ["bench", "{tflite}", "--plot", "p.png"], "pip install matplotlib"),
])
def test_missing_optional_package_is_one_line(module, args, hint, foreign_models, tiny_tflite, images, tmp_path):
    names = {"onnx": str(foreign_models["onnx"]), "tflite": str(tiny_tflite), "image": str(images / "cat" / "0.png")}
    code = BLOCK.format(name=module, args=[a.format(**names) for a in args])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("edgeclf: error: ") and module in lines[0] and hint in lines[0], lines[0]

