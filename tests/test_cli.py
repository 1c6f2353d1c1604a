"""The ``edgeclf`` command line: version, info, predict, and the one-line error contract."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
from click.testing import CliRunner

from edgeclf import __version__
from edgeclf.cli import main

from conftest import CLASSES


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgeclf", *args], capture_output=True, text=True, timeout=120)


def test_version_and_help():
    res = CliRunner().invoke(main, ["--version"])
    assert res.exit_code == 0 and __version__ in res.output
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0 and "predict" in res.output and "info" in res.output


def test_info(tiny_tflite, foreign_models):
    res = CliRunner().invoke(main, ["info", str(tiny_tflite)])
    assert res.exit_code == 0, res.output
    assert "labels     4: cat, dog, bird, fish" in res.output and "made by    edgeclf" in res.output
    res = CliRunner().invoke(main, ["info", str(foreign_models["uint8"]), "--json", "-"])
    d = json.loads(res.output)
    assert d["inputs"][0]["dtype"] == "uint8" and d["inputs"][0]["scale"] > 0 and not d["has_edgeclf_metadata"]


def test_predict_json_and_foreign_options(tmp_path, tiny_tflite, foreign_models):
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.full((40, 60, 3), 200, np.uint8))
    res = CliRunner().invoke(main, ["predict", str(tiny_tflite), str(img), "--json", "-", "--top-k", "2"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.output)
    assert rec["image"] == str(img) and len(rec["predictions"]) == 2
    assert rec["predictions"][0]["label"] in CLASSES
    res = CliRunner().invoke(main, ["predict", str(foreign_models["onnx"]), str(img), "--labels",
                                    str(foreign_models["labels"]), "--mean", "127.5", "--std", "127.5,127.5,127.5"])
    assert res.exit_code == 0, res.output
    assert any(c in res.output for c in CLASSES)


def test_errors_are_one_line_and_non_zero(tmp_path, tiny_tflite):
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 64)
    for args, needle in [(["info", str(tmp_path / "missing.tflite")], "missing.tflite: no such file"),
                         (["info", str(bad)], "broken.tflite: not a TFLite model"),
                         (["predict", str(tiny_tflite), str(tmp_path / "nope.jpg")], "nope.jpg: image not found")]:
        proc = _run(*args)
        assert proc.returncode == 1
        lines = [line for line in proc.stderr.splitlines() if line.startswith("edgeclf")]
        assert lines == [f"edgeclf: error: {lines[0][len('edgeclf: error: '):]}"] and needle in lines[0]
        assert "Traceback" not in proc.stderr
    proc = _run("predict", str(tiny_tflite))
    assert proc.returncode == 2 and "Missing argument" in proc.stderr
    proc = _run("predict", str(tiny_tflite), "x.png", "--mean", "1,2")
    assert proc.returncode == 2 and "expected 1 or 3 values" in proc.stderr


def test_missing_opencv_is_one_line_naming_both_installs(tiny_tflite, tmp_path):
    """OpenCV is an extra (apt's python3-opencv on Raspberry Pi OS): without it, one line says what to install."""
    code = ("import sys; sys.modules['cv2'] = None; from edgeclf.cli import main; "
            f"main(['predict', {str(tiny_tflite)!r}, {str(tmp_path / 'a.png')!r}])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()  # from the command's import, or from its body's lazy import
    assert len(lines) == 1 and "predict" in lines[0] and lines[0].endswith(
        "needs cv2, which is not installed: pip install 'edgeclf[opencv]' "
        "(on Raspberry Pi OS or Jetson: sudo apt install python3-opencv)")
