#!/usr/bin/env bash
# The on-device runtime in two environments without TensorFlow, each running the runtime tests on fixture models
# that the full environment (.venv, made by setup.sh) builds first:
#   A "pios":   Raspberry Pi OS bookworm as its docs say: a venv with --system-site-packages over apt's
#               python3-numpy (1.24) and python3-opencv (4.6), then pip install ".[onnx]" with numpy held at apt's.
#   B "lowest": a plain venv with every direct requirement at its floor (uv --resolution lowest-direct).
# Usage (from anywhere, as root on Debian, after bash setup.sh): bash .ci/runtime_envs.sh [pios|lowest]...
# Environment: EDGECLF_RUNTIME_WORK (default .ci-venvs/runtime): venvs rebuilt each run, models while stale.
#   EDGECLF_RUNTIME_PHASE: all (default) | install (models, wheel, venvs; no tests) | test (tests in the venvs an
#   install phase made). .ci/run installs while the main suite runs and tests afterwards, on a quiet machine: the
#   camera tests check real-time pacing.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=${EDGECLF_RUNTIME_WORK:-$REPO/.ci-venvs/runtime}
PY=/usr/bin/python3                      # Debian's (and Raspberry Pi OS's) own Python
TESTS=(tests/test_runtime.py tests/test_cli.py tests/test_artifact.py tests/test_camera.py tests/test_bench.py
       tests/test_cli_grammar.py tests/test_first_contact.py tests/test_documented_commands.py)
CASES=("$@"); [ ${#CASES[@]} -gt 0 ] || CASES=(pios lowest)
PHASE=${EDGECLF_RUNTIME_PHASE:-all}
case $PHASE in all|install|test) ;; *) echo "runtime_envs: EDGECLF_RUNTIME_PHASE must be all, install or test" >&2; exit 1 ;; esac
APT_PACKAGES=(python3-numpy python3-opencv python3-venv)

say() { printf '\n== runtime_envs: %s\n' "$*"; }
die() { printf 'runtime_envs: FAILED: %s\n' "$*" >&2; exit 1; }
stamp() { date +%s; }

[ -x .venv/bin/python ] || die ".venv is missing: run 'bash setup.sh' first (it builds the fixture models)"
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

if [ "$PHASE" != test ]; then  # install: apt packages, uv, fixture models, the wheel (the cases make the venvs)

# -- apt's numpy/OpenCV/venv, as on Raspberry Pi OS; apt-get update only when something is missing -------------
apt_ready() {
  local p
  for p in "${APT_PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || return 1
  done
}
if ! apt_ready; then
  command -v apt-get >/dev/null || die "needs Debian's apt for ${APT_PACKAGES[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "apt-get install ${APT_PACKAGES[*]}"
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${APT_PACKAGES[@]}"; } \
    >"$WORK/apt.log" 2>&1 || { tail -20 "$WORK/apt.log" >&2; die "apt-get install ${APT_PACKAGES[*]}"; }
fi

# -- uv (for the lowest-direct resolution) in its own small venv, unless one is on PATH ------------------------
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  [ -x "$WORK/uv/bin/uv" ] || { "$PY" -m venv "$WORK/uv" && "$WORK/uv/bin/python" -m pip install -q uv; } \
    || die "could not install uv"
  UV=$WORK/uv/bin/uv
fi

# -- the fixture models, made by TensorFlow in the full environment; reused while their inputs are unchanged -----
t0=$(stamp)
key=$( { cat tests/fixture_models.py setup.cfg; find edgeclf -name '*.py' | sort | xargs cat;
         .venv/bin/python -c 'import importlib.metadata as m; print(m.version("tensorflow"), m.version("tf2onnx"))'; } \
       | sha256sum | cut -c1-16)
if [ "$(cat "$WORK/models/.key" 2>/dev/null)" != "$key" ]; then
  say "fixture models -> $WORK/models (with .venv)"
  rm -rf "$WORK/models"
  .venv/bin/python tests/fixture_models.py "$WORK/models" >"$WORK/models.log" 2>&1 \
    || { tail -30 "$WORK/models.log" >&2; die "tests/fixture_models.py (see $WORK/models.log)"; }
  echo "$key" >"$WORK/models/.key"
fi
echo "models: $(( $(stamp) - t0 )) s"

# -- one wheel of this checkout, installed by case A as a release would be (B installs the checkout's copy itself: uv's
#    lowest-direct takes a local project's own requirements as the direct ones, a wheel's as transitive) ----------
t0=$(stamp)
rm -rf "$WORK/dist" "$WORK/src"
mkdir -p "$WORK/src"  # a copy of the checkout: building writes build/ and *.egg-info, which stay out of the repository
tar -C "$REPO" --exclude=./.venv --exclude=./.ci-venvs --exclude=./.git --exclude=./runs -cf - . | tar -C "$WORK/src" -xf -
"$UV" build -q --wheel -o "$WORK/dist" "$WORK/src" >"$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; die "uv build --wheel"; }
WHEEL=$(ls "$WORK"/dist/edgeclf-*.whl)
echo "wheel: $(basename "$WHEEL"), $(( $(stamp) - t0 )) s"
fi

unset PYTHONPATH  # from here on only the installed copies may be imported

# -- one environment's tests: from outside the repo, so the installed edgeclf is what runs ----------------------
run_tests() {  # NAME VENV
  local name=$1 venv=$2 rc
  [ -x "$venv/bin/python" ] || die "$name: no environment at $venv (run with EDGECLF_RUNTIME_PHASE=install first)"
  (cd "$WORK" && "$venv/bin/python" - "$venv") <<'EOF' || die "$name: edgeclf is not the installed copy"
import sys, edgeclf, importlib.metadata as md
print("edgeclf", edgeclf.__file__)
assert edgeclf.__file__.startswith(sys.argv[1]), "imported from the source tree, not the venv"
EOF
  set +e
  (cd "$WORK" && EDGECLF_TEST_MODELS="$WORK/models" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
     -c "$REPO/setup.cfg" --rootdir "$REPO" "${TESTS[@]/#/$REPO/}")
  rc=$?
  set -e
  [ "$rc" -eq 5 ] && die "$name: pytest collected no tests"
  [ "$rc" -eq 0 ] || die "$name: runtime tests failed (pytest exit $rc)"
}

versions() {  # VENV
  "$1/bin/python" - <<'EOF'
import importlib, importlib.metadata as md
for mod, dist in [("numpy", "numpy"), ("cv2", None), ("ai_edge_litert", "ai-edge-litert"), ("onnxruntime", "onnxruntime"),
                  ("click", "click"), ("rich", "rich"), ("flatbuffers", "flatbuffers")]:
    m = importlib.import_module(mod)
    v = md.version(dist) if dist else m.__version__
    print(f"  {mod:15} {v:12} {m.__file__}")
EOF
}

case_pios() {
  local venv=$WORK/pios t0
  if [ "$PHASE" != test ]; then
  t0=$(stamp)
  say "A pios: venv --system-site-packages over apt's numpy/OpenCV, pip install '.[onnx]'"
  rm -rf "$venv"
  "$PY" -m venv --system-site-packages "$venv"
  # what the Raspberry Pi docs say: hold numpy at apt's version (picamera2 and apt's cv2 are built against it)
  "$venv/bin/python" -c 'import numpy; print("numpy==" + numpy.__version__)' >"$WORK/pios-constraints.txt"
  "$venv/bin/python" -m pip install -q -c "$WORK/pios-constraints.txt" "$WHEEL[onnx]" pytest \
    >"$WORK/pios-pip.log" 2>&1 || { grep -v "is ignored" "$WORK/pios-pip.log" | tail -30 >&2; die "A pios: pip install"; }
  versions "$venv"
  "$venv/bin/python" - <<'EOF' || die "A pios: numpy/cv2 must be apt's (/usr/lib/python3/dist-packages)"
import numpy, cv2, importlib.metadata as md
apt = "/usr/lib/python3/dist-packages/"
assert numpy.__file__.startswith(apt) and cv2.__file__.startswith(apt), (numpy.__file__, cv2.__file__)
wheels = [d.metadata["Name"] for d in md.distributions() if d.metadata["Name"].lower().startswith("opencv")]
assert not wheels, f"an OpenCV wheel was installed over apt's: {wheels}"
EOF
  echo "A pios install: $(( $(stamp) - t0 )) s"
  fi
  [ "$PHASE" = install ] && return
  t0=$(stamp)
  run_tests "A pios" "$venv"
  echo "A pios tests: $(( $(stamp) - t0 )) s"
}

case_lowest() {
  local venv=$WORK/lowest t0
  if [ "$PHASE" != test ]; then
  t0=$(stamp)
  say "B lowest: uv pip install --resolution lowest-direct '.[onnx,opencv]'"
  rm -rf "$venv"
  "$UV" venv -q -p "$PY" "$venv"
  "$UV" pip install -q -p "$venv/bin/python" --resolution lowest-direct "$WORK/src[onnx,opencv]" \
    || die "B lowest: uv pip install --resolution lowest-direct"
  "$UV" pip install -q -p "$venv/bin/python" pytest || die "B lowest: pytest"  # pytest's own floor is not ours
  versions "$venv"
  echo "B lowest install: $(( $(stamp) - t0 )) s"
  fi
  [ "$PHASE" = install ] && return
  t0=$(stamp)
  run_tests "B lowest" "$venv"
  echo "B lowest tests: $(( $(stamp) - t0 )) s"
}

for c in "${CASES[@]}"; do
  case $c in
    pios) case_pios ;;
    lowest) case_lowest ;;
    *) die "unknown case '$c' (pios, lowest)" ;;
  esac
done
say "$([ "$PHASE" = install ] && echo installed || echo passed): ${CASES[*]}"
