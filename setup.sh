#!/usr/bin/env bash
# Set up a fresh machine for edgeclf: a virtual environment with the runtime, training and test extras,
# plus the Fashion-MNIST Debian package (the built-in demo data) where apt is available.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[train,onnx,dev]"
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist; } >/dev/null \
    || echo "setup.sh: could not install dataset-fashion-mnist; the demo will say how to get the data" >&2
fi
echo "setup.sh: ready (.venv)"
