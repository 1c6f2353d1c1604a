#!/usr/bin/env bash
# Build a TensorRT engine from an edgeclf ONNX file on the Jetson (or any NVIDIA GPU machine).
#
#   converters/onnx_to_tensorrt.sh MODEL_tensorrt.onnx [fp32|fp16|int8] [ENGINE]
#
# `edgeclf convert --to tensorrt --quant fp16|int8` writes MODEL_<quant>_tensorrt.onnx (static batch-1
# shape). For int8 it is an explicitly quantised (QDQ) ONNX: TensorRT reads the int8 scales from its
# QuantizeLinear/DequantizeLinear nodes, so the Jetson needs no image data and no calibration cache. Engines
# depend on the GPU and the TensorRT version, which is why they are built here, on the device:
#
#   fp16: trtexec --onnx=M.onnx --saveEngine=M.engine --fp16
#   int8: trtexec --onnx=M_int8_tensorrt.onnx --saveEngine=M.engine --int8 --fp16   (QDQ ONNX; fp16 fallback)
#
# Check the "Precision:" line trtexec prints: the engine is int8 only when it says INT8.
#
# trtexec ships with JetPack in /usr/src/tensorrt/bin. Alternative without an engine file: run the .onnx
# with edgeclf's Runtime(device="jetson"), which uses ONNX Runtime's TensorRT provider and caches the
# engine it builds.
# Environment: WORKSPACE_MB (default 1024), TRTEXEC (path to trtexec).
set -euo pipefail

usage() { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && $# -le 3 ]] || usage
onnx=$1
precision=${2:-fp16}
stem=${onnx%.onnx}
stem=${stem%_tensorrt}
engine=${3:-${stem}.engine}
[[ -f $onnx ]] || { echo "onnx_to_tensorrt.sh: error: $onnx: no such file" >&2; exit 1; }
trtexec=${TRTEXEC:-$(command -v trtexec || echo /usr/src/tensorrt/bin/trtexec)}
[[ -x $trtexec ]] || { echo "onnx_to_tensorrt.sh: error: trtexec not found (install TensorRT / JetPack, or set TRTEXEC)" >&2; exit 1; }

args=(--onnx="$onnx" --saveEngine="$engine" --memPoolSize=workspace:"${WORKSPACE_MB:-1024}"M)
case $precision in
  fp32) ;;
  fp16) args+=(--fp16) ;;
  int8)
    grep -q QuantizeLinear "$onnx" || { echo "onnx_to_tensorrt.sh: error: $onnx has no QuantizeLinear nodes; int8 needs the QDQ ONNX (edgeclf convert --to tensorrt --quant int8)" >&2; exit 1; }
    args+=(--int8 --fp16) ;;
  *) echo "onnx_to_tensorrt.sh: error: precision must be fp32, fp16 or int8, got '$precision'" >&2; exit 2 ;;
esac
echo "+ $trtexec ${args[*]}"
"$trtexec" "${args[@]}"
echo "engine: $engine"
