"""``edgeclf demo --quick``: the README's main job, end to end, as a user runs it (once: it is the suite's longest test)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed (setup.sh installs it)")
def test_quick_demo_writes_a_complete_report(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "edgeclf", "demo", "--quick", "--out", str(out)]
    env = {**os.environ, "COLUMNS": "200"}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    report = (out / "report.md").read_text()
    for section in ("## Settings", "## Training", "## Formats", "## Why it decided: Grad-CAM", "## Run it"):
        assert section in report
    for png in ("run/plots/training_curves.png", "run/plots/confusion_matrix.png", "latency_vs_accuracy.png",
                "gradcam.png"):
        assert (out / png).stat().st_size > 1000, png
        assert png in report
    timings = json.loads((out / "timings.json").read_text())  # what benchmarks/demo.py records
    assert timings["plan"] == "quick" and timings["total_s"] >= sum(timings["steps_s"].values()) - 1
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4 and "</html>" in html
    records = json.loads((out / "bench.json").read_text())
    assert {Path(r["model"]).name for r in records} == {"run_fp32.tflite", "run_int8.tflite", "run_fp32.onnx"}
    assert all(r["status"] == "passed" and 0.3 < r["accuracy"] <= 1 for r in records)  # 10 classes: chance is 0.1
    for r in records:  # every file embeds its labels, preprocessing and a passed parity check
        meta = subprocess.run([sys.executable, "-m", "edgeclf", "info", r["model"], "--json", "-"], capture_output=True,
                              text=True, timeout=120)
        d = json.loads(meta.stdout)["metadata"]
        assert d["labels"][0] == "T-shirt/top" and d["extra"]["parity"]["passed"]
