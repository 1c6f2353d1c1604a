"""Edge TPU: check a .tflite is what the compiler needs, run ``edgetpu_compiler``, read its operation log.

The compiler only runs on x86-64 Linux; where it is missing edgeclf still writes the compiler-ready int8
file and points to ``converters/edgetpu_compile.sh`` (Coral's apt repository or a container).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from edgeclf.errors import ConversionError
from edgeclf.artifact import inspect_tflite_file

COMPILER = "edgetpu_compiler"
SCRIPT = "converters/edgetpu_compile.sh"
TPU_STATUS = "Mapped to Edge TPU"


def check_edgetpu_ready(path: str | os.PathLike) -> None:
    """Full-integer I/O, static shapes, batch 1: otherwise the compiler leaves the model on the CPU."""
    info = inspect_tflite_file(path)
    for t in info.inputs + info.outputs:
        if t.dtype not in ("uint8", "int8"):
            raise ConversionError(f"{path}: Edge TPU needs full-integer input/output; tensor {t.name!r} is {t.dtype} "
                                  "(use --io uint8 or int8)")
        if any(d < 0 for d in t.shape_signature) or (t.shape and t.shape[0] != 1):
            raise ConversionError(f"{path}: Edge TPU needs a static batch-1 shape; tensor {t.name!r} has "
                                  f"{t.shape_signature}")


def parse_compiler_log(text: str) -> dict[str, Any]:
    """The compiler's summary: version, subgraphs and each operator with its count and where it runs."""
    report: dict[str, Any] = {"ops": []}
    if m := re.search(r"Edge TPU Compiler version (\S+)", text):
        report["compiler_version"] = m.group(1)
    if m := re.search(r"Number of Edge TPU subgraphs:\s*(\d+)", text):
        report["edgetpu_subgraphs"] = int(m.group(1))
    if m := re.search(r"Total number of operations:\s*(\d+)", text):
        report["total_ops"] = int(m.group(1))
    table = text.split("Operator", 1)[1] if re.search(r"^Operator\s+Count\s+Status", text, re.M) else ""
    for line in table.splitlines()[1:]:
        m = re.match(r"^\s*([A-Z][A-Z0-9_]*)\s+(\d+)\s+(\S.*?)\s*$", line)
        if m:
            report["ops"].append({"op": m.group(1), "count": int(m.group(2)), "status": m.group(3),
                                  "on_tpu": m.group(3) == TPU_STATUS})
    report["tpu_ops"] = sum(o["count"] for o in report["ops"] if o["on_tpu"])
    report["cpu_ops"] = sum(o["count"] for o in report["ops"] if not o["on_tpu"])
    return report


def format_report(report: dict[str, Any]) -> str:
    """One line per operator type plus the TPU/CPU totals, for the terminal."""
    lines = [f"  {o['op']:<24} {o['count']:>4}  {'TPU' if o['on_tpu'] else 'CPU: ' + o['status']}" for o in report["ops"]]
    lines.append(f"  {report['tpu_ops']} ops on the Edge TPU, {report['cpu_ops']} on the CPU, "
                 f"{report.get('edgetpu_subgraphs', '?')} TPU subgraph(s)")
    return "\n".join(lines)


def find_compiler() -> str | None:
    """Path of ``edgetpu_compiler`` when it is on PATH."""
    return shutil.which(COMPILER)


def compile_edgetpu(path: str | os.PathLike, out_dir: str | os.PathLike, compiler: str,
                    timeout: int = 600) -> tuple[Path, dict[str, Any]]:
    """Run the compiler on ``path`` into ``out_dir``; return the compiled file and the parsed operation log."""
    src = Path(path)
    cmd = [compiler, "--show_operations", "--out_dir", str(out_dir), str(src)]
    try:
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConversionError(f"{src}: edgetpu_compiler did not finish in {timeout} s") from None
    log = run.stdout + run.stderr
    compiled = Path(out_dir) / f"{src.stem}_edgetpu.tflite"
    if run.returncode != 0 or not compiled.is_file():
        last = next((ln for ln in reversed(log.splitlines()) if ln.strip()), "no output")
        raise ConversionError(f"{src}: edgetpu_compiler failed (exit {run.returncode}): {last.strip()}")
    return compiled, parse_compiler_log(log)
