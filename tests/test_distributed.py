"""Distributed training, each in fresh processes (devices and TF_CONFIG are fixed once TensorFlow starts): mirrored
over two logical CPU devices, and two workers on localhost."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIRRORED_RUN = """
import json, sys
import edgeclf  # sets TF_USE_LEGACY_KERAS before TensorFlow loads
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[2])
from test_training import TINY, digits
from edgeclf.models import build
from edgeclf.training.trainer import train
start = sys.argv[1] + ".weights.h5"  # pruning starts from a saved model (--epochs 0 --weights FILE): no float epoch
build(TINY["arch"], 10, TINY["img_size"], None, alpha=TINY["alpha"]).save_weights(start)
run = train(digits(), out=sys.argv[1], epochs=0, prune=0.5, prune_epochs=1, strategy="mirrored",
            **{**TINY, "weights": start})
print(json.dumps(json.loads((run / "metrics.json").read_text())))
"""


def test_mirrored_strategy_trains_and_prunes_on_two_replicas(tmp_path):
    """--strategy mirrored over two logical CPU devices (a fresh process: devices are fixed once TF starts); pruning's
    per-replica step counter is the part a strategy can break (QAT itself is covered by pruned_qat_run)."""
    proc = subprocess.run([sys.executable, "-c", MIRRORED_RUN, str(tmp_path / "run"), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(proc.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2 and metrics["epochs_run"] == 1
    assert abs(metrics["sparsity"] - 0.5) < 0.02
    assert (tmp_path / "run" / "model.keras").is_file()


WORKER_RUN = """
import json, os, sys
os.environ["TF_CONFIG"] = sys.argv[1]
sys.path.insert(0, sys.argv[3])
from test_training import TINY, digits
from edgeclf.training.trainer import train
run = train(digits(), out=sys.argv[2], epochs=1, freeze_epochs=0, strategy="multiworker", **TINY)
print(json.dumps(json.loads((run / "metrics.json").read_text())["replicas"]))
"""


def test_multiworker_strategy_trains_two_workers_in_sync_into_the_chiefs_folder(tmp_path):
    """Two worker processes on localhost (TF_CONFIG): one synchronised run, written by the chief only."""
    import socket

    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("localhost", 0))
    cluster = {"worker": [f"localhost:{s.getsockname()[1]}" for s in socks]}
    for s in socks:
        s.close()
    run = tmp_path / "run"
    logs = [(tmp_path / f"worker{i}.out", tmp_path / f"worker{i}.err") for i in range(2)]
    procs = []
    for i, (out, err) in enumerate(logs):  # files, not pipes: TensorFlow's logging would fill a pipe
        with out.open("w") as stdout, err.open("w") as stderr:
            procs.append(subprocess.Popen([sys.executable, "-c", WORKER_RUN, json.dumps(
                {"cluster": cluster, "task": {"type": "worker", "index": i}}), str(run), str(Path(__file__).parent)],
                stdout=stdout, stderr=stderr))
    try:  # a worker that fails leaves its peer waiting for it: stop both rather than hang
        deadline = time.monotonic() + 600
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(1)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, logs):
        p.wait()
        assert p.returncode == 0, err.read_text()[-3000:]
        assert out.read_text().strip().splitlines()[-1] == "2"
    assert (run / "model.keras").is_file() and json.loads((run / "metrics.json").read_text())["replicas"] == 2
    assert not any(Path(tempfile.gettempdir()).glob(f"edgeclf-{run.name}-worker1"))
