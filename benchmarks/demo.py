"""The demo end to end, timed: what README.md's "the demo" row quotes.

    python benchmarks/demo.py [--quick] [--out benchmarks/results/demo.json | demo_quick.json]

Runs ``edgeclf demo`` (``--quick``: the small plan) into a fresh temporary folder, so training is never
reused, and records the run's ``timings.json`` with each file's size, test accuracy and CPU p50 from its
``bench.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgeclf.fileio import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="The quick plan (edgeclf demo --quick).")
    ap.add_argument("--out", type=Path, help="Record (default results/demo.json or demo_quick.json).")
    args = ap.parse_args()
    out = args.out or RESULTS / ("demo_quick.json" if args.quick else "demo.json")
    with tempfile.TemporaryDirectory(prefix="edgeclf-demo-") as tmp:
        cmd = [sys.executable, "-m", "edgeclf", "demo", "-o", tmp] + (["--quick"] if args.quick else [])
        subprocess.run(cmd, check=True)
        timings = json.loads((Path(tmp) / "timings.json").read_text())
        bench = json.loads((Path(tmp) / "bench.json").read_text())
    rows = [{"file": Path(r["model"]).name, "quant": r.get("quant"), "size_mb": round(r["size_bytes"] / 1e6, 2),
             "accuracy": r.get("accuracy"), "p50_ms": (r.get("latency_ms") or {}).get("p50")} for r in bench]
    record = {"command": "edgeclf demo" + (" --quick" if args.quick else ""), "timings": timings, "files": rows,
              "machine": platform.platform(), "load_avg_1m": round(os.getloadavg()[0], 1),
              "date": time.strftime("%Y-%m-%d")}
    atomic_write_text(out, json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
