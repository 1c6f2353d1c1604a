"""When an int8 file loses accuracy: which layers quantise worst, and the fewest of them to keep in float.

TensorFlow's quantization debugger fits the int8 ranges on the calibration images (as the file was built),
then runs the float and the int8 graph side by side on the *check* images the file failed on, and reports,
per quantised tensor, the error of the int8 value against the float one: on the calibration images
themselves a range fitted to unrepresentative images looks perfect. Layers are ranked by
RMSE / scale (the error in units of the tensor's quantisation step: ~0.29 is pure rounding, much more means
the range fits badly). ``fallback`` keeps the k worst layers in float (``denylisted_nodes``), rebuilding
without recalibrating, and looks for the smallest k whose file passes the gate: doubling k, then bisecting.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.conversion.calibration import representative
from edgeclf.evaluation.parity import Parity
from edgeclf.conversion.tflite import native_stderr_silenced, tflite_converter
from edgeclf.fileio import atomic_write_text

log = logging.getLogger("edgeclf")
MAX_STEPS = 12
SHOWN = 5


@dataclass
class Repair:
    """The debugger's per-layer errors and, when asked, the fallback's outcome."""

    layers: list[dict[str, Any]]                 # worst first
    debug_seconds: float
    kept_float: list[str] = field(default_factory=list)
    attempts: list[dict[str, Any]] = field(default_factory=list)
    model: bytes | None = None                   # the repaired file, when one passed
    parity: Parity | None = None

    def worst(self, n: int = SHOWN) -> str:
        """The ``n`` worst layers, one per line, for the terminal."""
        return "\n".join(f"  {row['rmse_over_scale']:8.3f}  {row['op_name']:<18} {row['tensor_name'].split(';')[0]}"
                         for row in self.layers[:n])


def debugger(model: Any, shape: tuple[int, int, int], calib: np.ndarray, pre: Preprocess, judged: np.ndarray) -> Any:
    """A quantization debugger calibrated like the int8 file and measuring its error on the ``judged`` images."""
    import tensorflow as tf

    conv = tflite_converter(model, shape, "int8", "float32", calib, pre)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]  # float fallback ops must be allowed
    with native_stderr_silenced():
        return tf.lite.experimental.QuantizationDebugger(converter=conv, debug_dataset=lambda: representative(judged, pre))


def layer_errors(dbg: Any) -> list[dict[str, Any]]:
    """Per-layer statistics from the debugger, with RMSE / scale, worst first."""
    with native_stderr_silenced():
        dbg.run()
    buf = io.StringIO()
    dbg.layer_statistics_dump(buf)
    rows = []
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        scale, mse = float(row["scale"]), float(row["mean_squared_error"])
        rows.append({"op_name": row["op_name"], "tensor_name": row["tensor_name"],
                     "rmse_over_scale": round(math.sqrt(mse) / scale, 4) if scale else float("inf"),
                     "mean_squared_error": float(f"{mse:.6g}"), "mean_error": float(f"{float(row['mean_error']):.6g}"),
                     "max_abs_error": float(f"{float(row['max_abs_error']):.6g}"), "scale": float(f"{scale:.6g}")})
    return sorted(rows, key=lambda r: -r["rmse_over_scale"])


def diagnose(model: Any, shape: tuple[int, int, int], calib: np.ndarray, pre: Preprocess,
             judged: np.ndarray) -> tuple[Any, Repair]:
    """Run the debugger once: the debugger (for rebuilding) and the ranked layer report."""
    t0 = time.perf_counter()
    dbg = debugger(model, shape, calib, pre, judged)
    layers = layer_errors(dbg)
    return dbg, Repair(layers, round(time.perf_counter() - t0, 1))


def fallback(dbg: Any, report: Repair, judge: Callable[[bytes], Parity], max_steps: int = MAX_STEPS) -> Repair:
    """The fewest worst layers kept in float that make ``judge`` pass (doubling, then bisection), in ``report``."""
    import tensorflow as tf

    names = [row["tensor_name"] for row in report.layers]
    tried: dict[int, tuple[bytes, Parity]] = {}

    def attempt(k: int) -> bool:
        with native_stderr_silenced():
            try:  # the setter stores the options first, then re-instruments a debug model we do not need
                dbg.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=names[:k])
            except ValueError:  # "not in debug mode": no quantised layer left to instrument
                pass
            model = dbg.get_nondebug_quantized_model()
        parity = judge(model)
        tried[k] = (model, parity)
        report.attempts.append({"float_layers": k, "status": parity.status, "flips": parity.flips,
                                "decisive": parity.decisive, "accuracy_drop": parity.accuracy_drop,
                                "agreement": parity.agreement, "size_bytes": len(model)})
        log.info("int8 fallback: %d layer(s) in float -> %s", k, parity.status)
        return parity.passed

    low, high = 0, None  # low: known to fail (0 = the plain int8 file); high: known to pass
    k = 1
    while high is None and len(report.attempts) < max_steps and k <= len(names):
        if attempt(k):
            high = k
        else:
            low, k = k, min(2 * k, len(names)) if k < len(names) else k + 1
    while high is not None and high - low > 1 and len(report.attempts) < max_steps:
        mid = (low + high) // 2
        low, high = (low, mid) if attempt(mid) else (mid, high)
    if high is not None:
        report.model, report.parity = tried[high]
        report.kept_float = names[:high]
    return report


def latency_ms(paths: dict[str, Path], runs: int = 30, threads: int = 2) -> dict[str, float]:
    """Median ``Runtime.infer`` milliseconds per file on the CPU, calls interleaved after a warm-up."""
    from edgeclf.runtime import Runtime

    loops = {}
    for name, path in paths.items():
        rt = Runtime(path, num_threads=threads)
        x = rt.preprocess(np.full((256, 256, 3), 128, np.uint8))
        for _ in range(5):
            rt.infer(x)
        loops[name] = (rt, x)
    times: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(runs):
        for name, (rt, x) in loops.items():
            t0 = time.perf_counter_ns()
            rt.infer(x)
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return {name: round(float(np.median(t)), 3) for name, t in times.items()}


def repair_int8(model: Any, shape: tuple[int, int, int], calib: np.ndarray, judged: np.ndarray, pre: Preprocess,
                built: Path, parity: Parity, rejudge: Callable[[Path], Parity], auto: bool, report_path: Path,
                say: Callable[[str], None]) -> tuple[Parity, dict[str, Any]]:
    """Diagnose the failing int8 file ``built``; with ``auto``, replace it by the smallest float fallback that passes.

    ``rejudge`` seals and gates the file at ``built``. Writes the per-layer report to ``report_path`` and returns
    the final parity and what to record in the convert report.
    """
    dbg, report = diagnose(model, shape, calib, pre, judged)
    say(f"{built.name}: {parity.status}; layers with the largest int8 error (RMSE / quantisation step):\n{report.worst()}")
    record: dict[str, Any] = {"file": built.name, "gate_before": parity.to_dict(), "metric": "rmse_over_scale",
                              "measured_on": f"{len(judged)} check images (ranges fitted on {len(calib)} others)",
                              "debug_seconds": report.debug_seconds, "layers": report.layers}
    if auto:
        plain = built.read_bytes()
        original = built.with_name(f"plain-{built.name}")
        original.write_bytes(plain)

        def judge(candidate: bytes) -> Parity:
            built.write_bytes(candidate)
            return rejudge(built)

        fallback(dbg, report, judge)
        summary: dict[str, Any] = {"attempts": report.attempts, "passed": report.parity is not None}
        if report.parity is None:  # nothing passed within the steps: the plain int8 file stays
            built.write_bytes(plain)
            rejudge(built)
            say(f"{built.name}: int8 fallback found no passing mix in {len(report.attempts)} attempts")
        else:
            built.write_bytes(report.model or b"")
            parity = rejudge(built)
            lat = latency_ms({"int8": original, "fallback": built})
            summary.update(float_layers=report.kept_float, gate_after=parity.to_dict(),
                           size_bytes={"int8": len(plain), "fallback": len(report.model or b"")},
                           latency_ms={**lat, "runs": 30, "threads": 2, "statistic": "median of Runtime.infer, interleaved"},
                           io="float32 (the debugger's rebuild keeps float input/output)")
            say(f"{built.name}: kept {len(report.kept_float)} layer(s) in float -> {parity.status}; latency "
                f"{lat['int8']} -> {lat['fallback']} ms, size {len(plain) / 1e6:.2f} -> {len(report.model or b'') / 1e6:.2f} MB")
        original.unlink()
        record["fallback"] = summary
    atomic_write_text(report_path, json.dumps(record, indent=2))
    return parity, {"int8_layers": report_path.name, **({"int8_fallback": {k: v for k, v in record["fallback"].items()
                                                                          if k != "attempts"}} if auto else {})}
