"""TensorRT: the ONNX an engine is built from and the trtexec command that builds it.

Engines are specific to the GPU and TensorRT version, so they are built on the Jetson itself
(``converters/onnx_to_tensorrt.sh`` or ONNX Runtime's TensorRT provider); edgeclf builds one here only
when ``trtexec`` is on PATH. int8 engines come from an explicitly quantised (QDQ) ONNX: TensorRT takes the
scales from its QuantizeLinear/DequantizeLinear nodes, so no calibration cache (tied to one TensorRT version)
is needed and the ONNX's own int8 accuracy is what the parity gate measured.
"""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from edgeclf.errors import ConversionError

TRTEXEC = "trtexec"
SCRIPT = "converters/onnx_to_tensorrt.sh"
PRECISIONS = {"fp32": "fp32", "fp16": "fp16 (engine setting; this ONNX is fp32)", "int8": "int8 (QDQ)"}


def trtexec_command(onnx: str | os.PathLike, engine: str | os.PathLike, precision: str = "fp16",
                    workspace_mb: int = 1024, trtexec: str = TRTEXEC) -> list[str]:
    """The trtexec argument list that builds ``engine`` from ``onnx`` at ``precision`` (fp32|fp16|int8).

    int8 expects a QDQ ONNX; ``--fp16`` lets layers without an int8 kernel fall back to fp16, not fp32."""
    if precision not in PRECISIONS:
        raise ConversionError(f"TensorRT precision must be fp32, fp16 or int8, got {precision!r}")
    cmd = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", f"--memPoolSize=workspace:{workspace_mb}M"]
    return cmd + {"fp32": [], "fp16": ["--fp16"], "int8": ["--int8", "--fp16"]}[precision]


def engine_precision(log: str) -> str | None:
    """The precisions trtexec says it built with (its ``Precision: FP32+FP16+INT8`` build option), lower case."""
    m = re.search(r"^.*\bPrecision:\s*([A-Za-z0-9+]+)", log, re.M)
    return m.group(1).lower() if m else None


def find_trtexec() -> str | None:
    """Path of trtexec when on PATH (JetPack puts it in /usr/src/tensorrt/bin)."""
    return shutil.which(TRTEXEC) or (str(p) if (p := Path("/usr/src/tensorrt/bin/trtexec")).is_file() else None)
