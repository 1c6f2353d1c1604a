#!/usr/bin/env bash
# Compile an edgeclf int8 .tflite for the Coral Edge TPU.
#
#   converters/edgetpu_compile.sh MODEL_int8.tflite [OUT_DIR]      -> OUT_DIR/MODEL_int8_edgetpu.tflite
#
# `edgeclf convert --to edgetpu` writes a compiler-ready file (full int8, uint8/int8 I/O, static batch-1
# shape) and calls edgetpu_compiler itself when it is on PATH. The compiler exists only for x86-64 Linux;
# this script runs it by one of two routes:
#
#   1. Coral's Debian repository (x86-64 Debian/Ubuntu, needs sudo):
#        curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg \
#          | sudo gpg --dearmor -o /etc/apt/keyrings/coral-edgetpu.gpg
#        echo "deb [signed-by=/etc/apt/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
#          | sudo tee /etc/apt/sources.list.d/coral-edgetpu.list
#        sudo apt-get update && sudo apt-get install -y edgetpu-compiler
#      (EDGETPU_INSTALL=1 makes this script do exactly that.)
#   2. A container (any OS with Docker, including Apple-silicon Macs via amd64 emulation): the same
#      packages installed in a throw-away debian:bookworm-slim image, tagged edgeclf/edgetpu-compiler.
#      Chosen automatically when the compiler is missing and a docker daemon answers (or EDGETPU_DOCKER=1).
#
# Check the result (operations on the TPU vs the CPU are printed by the compiler above):
#   edgeclf info OUT_DIR/MODEL_int8_edgetpu.tflite
set -euo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 2 ]] || usage
model=$1
out_dir=${2:-$(dirname "$model")}
[[ -f $model ]] || { echo "edgetpu_compile.sh: error: $model: no such file" >&2; exit 1; }
mkdir -p "$out_dir"

apt_install() {
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo mkdir -p /etc/apt/keyrings
  curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | $sudo gpg --batch --yes --dearmor -o /etc/apt/keyrings/coral-edgetpu.gpg
  echo "deb [signed-by=/etc/apt/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
    | $sudo tee /etc/apt/sources.list.d/coral-edgetpu.list >/dev/null
  $sudo apt-get update && $sudo apt-get install -y edgetpu-compiler
}

docker_compile() {
  local image=edgeclf/edgetpu-compiler
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    docker build --platform linux/amd64 -t "$image" - <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl gnupg ca-certificates \
 && mkdir -p /etc/apt/keyrings \
 && curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /etc/apt/keyrings/coral-edgetpu.gpg \
 && echo "deb [signed-by=/etc/apt/keyrings/coral-edgetpu.gpg] https://packages.cloud.google.com/apt coral-edgetpu-stable main" \
    > /etc/apt/sources.list.d/coral-edgetpu.list \
 && apt-get update && apt-get install -y --no-install-recommends edgetpu-compiler \
 && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["edgetpu_compiler"]
DOCKERFILE
  fi
  local in_dir; in_dir=$(cd "$(dirname "$model")" && pwd)
  local abs_out; abs_out=$(cd "$out_dir" && pwd)
  docker run --rm --platform linux/amd64 -u "$(id -u):$(id -g)" -v "$in_dir:/in:ro" -v "$abs_out:/out" "$image" \
    --show_operations --out_dir /out "/in/$(basename "$model")"
}

if command -v edgetpu_compiler >/dev/null 2>&1 && [[ ${EDGETPU_DOCKER:-0} != 1 ]]; then
  edgetpu_compiler --show_operations --out_dir "$out_dir" "$model"
elif [[ ${EDGETPU_INSTALL:-0} == 1 ]]; then
  apt_install && edgetpu_compiler --show_operations --out_dir "$out_dir" "$model"
elif docker info >/dev/null 2>&1; then
  docker_compile
else
  echo "edgetpu_compile.sh: error: edgetpu_compiler is not installed and no docker daemon is running;" \
       "run with EDGETPU_INSTALL=1 on x86-64 Debian/Ubuntu (Coral apt repository) or install docker" >&2
  exit 1
fi
echo "compiled: $out_dir/$(basename "${model%.tflite}")_edgetpu.tflite"
