#!/usr/bin/env bash
# Set up a fresh machine for edgeclf: a virtual environment with the runtime, training and test extras,
# plus the Fashion-MNIST Debian package (the built-in demo data) where apt is available.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[opencv,train,onnx,openvino,serve,dev]"
# Debian packages: the demo data set, and Chromium for the web page's browser test (no browser download).
want=""
[ -d /usr/share/datasets/fashion-mnist ] || want="$want dataset-fashion-mnist"
command -v chromium >/dev/null 2>&1 || want="$want chromium"
if [ -n "$want" ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq $want; } >/dev/null \
    || echo "setup.sh: could not install$want; the demo says how to get the data, the browser test skips" >&2
fi
echo "setup.sh: ready (.venv)"
