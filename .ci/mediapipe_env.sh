#!/usr/bin/env bash
# CI: a separate virtual environment with MediaPipe, for tests/test_mediapipe.py, which opens edgeclf's .tflite
# files with MediaPipe Tasks' own ImageClassifier (what Android, iOS and web apps use). It is kept apart from
# .venv because MediaPipe pins its own protobuf/numpy; the test skips when this environment is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EDGECLF_MEDIAPIPE_VENV:-.ci-venvs/mediapipe}
PY=${PYTHON:-python3}
start=$(date +%s)
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet mediapipe
echo "mediapipe_env.sh: $("$VENV/bin/python" -c 'import mediapipe; print("mediapipe", mediapipe.__version__)') in $VENV ($(( $(date +%s) - start )) s)"
