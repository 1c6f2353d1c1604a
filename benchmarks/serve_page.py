"""The screenshot of the web page README.md shows: the browser test of tests/test_serve.py, saving it here.

    python benchmarks/serve_page.py [--out benchmarks/results/serve_page.png]

The test suite itself saves its screenshot in a temporary folder, so running the tests changes nothing in the
repository; this script is the one way the committed picture is updated.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve_page.png")
    args = ap.parse_args()
    env = dict(os.environ, EDGECLF_SCREENSHOT=str(args.out.resolve()))
    test = "tests/test_serve.py::test_page_in_headless_chromium"
    sys.exit(subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT,
                            env=env).returncode)


if __name__ == "__main__":
    main()
