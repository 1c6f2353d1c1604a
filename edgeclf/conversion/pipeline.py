"""``edgeclf.convert``: a Keras classifier to TFLite / ONNX / Edge TPU / TensorRT files, each parity-gated.

Every file is built in a scratch folder, judged against the source model through ``Runtime`` on images the
int8 ranges were not fitted to (``checkset``; rules in ``parity``), then written under its final name with the
artifact metadata and the gate's figures embedded. A file that fails the gate, or that the check images are
too few to judge ("unverified"), is not written (unless ``keep_failed``).
"""
from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeclf.artifact import write_metadata
from edgeclf.conversion.checkset import CheckSet, choose
from edgeclf.conversion.source import Source, has_float_model, load_source
from edgeclf.errors import ConversionError
from edgeclf.fileio import atomic_path, atomic_write_text
from edgeclf.artifact.formats import FORMATS, IO_TYPES, QUANT_MODES, Format, get_format
from edgeclf.conversion.parity import check_parity, source_probabilities
from edgeclf.evaluation.parity import Limits, Parity
from edgeclf.artifact import inspect_tflite_file
from edgeclf.artifact.sizes import compressed_sizes
from edgeclf.artifact.tflite_standard import mediapipe_issues
from edgeclf.runtime.outputs import looks_like_probabilities

INT8_FALLBACK = ("off", "auto")


@dataclass
class ConvertResult:
    """One written (or refused) file: what it is, how big, how long it took and how well it agrees."""

    format: str
    quant: str
    path: Path | None
    size_bytes: int
    seconds: float
    parity: Parity | None
    kept: bool = True
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    compressed: dict[str, int] = field(default_factory=dict)  # bytes by coder (gzip, zstd, brotli): the OTA cost

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "quant": self.quant, "path": str(self.path) if self.path else None,
                "size_bytes": self.size_bytes, "compressed_bytes": self.compressed, "seconds": round(self.seconds, 3),
                "kept": self.kept,
                "parity": self.parity.to_dict() if self.parity else None, "notes": self.notes, "extra": self.extra}


def _split(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [s.strip().lower() for s in items if s.strip()]


def plan(to: str | Sequence[str], quant: str | Sequence[str] | None) -> list[tuple[Format, str]]:
    """The (format, quantisation) jobs asked for; unknown or unsupported names are one-line errors."""
    names = _split(to) or ["tflite"]
    quants = _split(quant)
    for q in quants:
        if q not in QUANT_MODES:
            raise ConversionError(f"unknown quantisation {q!r}; choose from {', '.join(QUANT_MODES)}")
    everything = "all" in names
    fmts = list(FORMATS) if everything else [get_format(n) for n in dict.fromkeys(names)]
    jobs = []
    for fmt in fmts:
        wanted = quants or [fmt.default_quant]
        unsupported = [q for q in wanted if q not in fmt.quants]
        if unsupported and not everything:
            raise ConversionError(f"format {fmt.name} has no {unsupported[0]} mode; it supports {', '.join(fmt.quants)}")
        jobs += [(fmt, q) for q in wanted if q in fmt.quants]
    if not jobs:
        raise ConversionError(f"no format supports {', '.join(quants)}")
    return jobs


class _Converter:
    """State shared by the jobs of one ``convert`` call: source, images, reference outputs, scratch folder."""

    def __init__(self, src: Source, out: Path, io: str, images: CheckSet, opset: int, limits: dict[str, Any],
                 int8_fallback: str, keep_failed: bool, allow_select_ops: bool, scratch: Path, say: Any,
                 batch: int | None = 1) -> None:
        self.src, self.out, self.io, self.calib, self.images, self.batch = src, out, io, images.calib, images, batch
        self.opset, self.limits, self.int8_fallback = opset, limits, int8_fallback
        self.keep_failed, self.allow_select_ops = keep_failed, allow_select_ops
        self.scratch, self.say = scratch, say
        self.reference = source_probabilities(src.model, images.check, src.metadata.preprocess, src.metadata.output)
        self.done: dict[tuple[str, str], ConvertResult] = {}

    # -- building blocks --------------------------------------------------------------------------
    def _tflite_bytes(self, quant: str) -> bytes:
        from edgeclf.conversion.tflite import to_tflite
        return to_tflite(self.src.model, self.src.input_shape, quant, self.io, self.calib, self.src.metadata.preprocess,
                         qat=self.src.is_qat, allow_select_ops=self.allow_select_ops, source=str(self.src.path),
                         batch=self.batch)

    def _onnx_file(self, name: str, quant: str) -> Path:
        from edgeclf.conversion.onnx import quantize_onnx, to_fp16, to_onnx
        fp32 = to_onnx(self.src.model, self.src.input_shape, self.scratch / f"fp32-{name}", self.opset, str(self.src.path),
                       self.batch)
        if quant == "fp16":
            return to_fp16(fp32, self.scratch / name)
        if quant != "int8" or self.src.is_qat:  # a QAT model's fake-quant ops already export as QDQ
            return fp32
        return quantize_onnx(fp32, self.scratch / name, self.calib, self.src.metadata.preprocess)

    def _quant_label(self, quant: str) -> str:
        return "qat-int8" if quant == "int8" and self.src.is_qat else quant

    def _finish(self, fmt: Format, quant: str, built: Path, final: Path, t0: float, threshold_quant: str,
                extra: dict[str, Any], notes: list[str]) -> ConvertResult:
        """Parity-check ``built``; write it to ``final`` with metadata when it passes (or keep_failed)."""
        meta = self.src.metadata.replace(quantization=self._quant_label(quant),
                                         extra={**self.src.metadata.extra,
                                                "conversion": {"format": fmt.name, "io": self.io,
                                                               "batch": self.batch or "dynamic", **extra}})
        write_metadata(built, meta)  # so Runtime reads the file exactly as the device will
        flex = [op for op in (inspect_tflite_file(built).custom_ops if built.suffix == ".tflite" else []) if op.startswith("Flex")]
        if flex:
            raise ConversionError(f"{final.name}: uses TF Select ops ({', '.join(flex)}), which the parity check's "
                                  "interpreter (ai-edge-litert) cannot run, so the file cannot be verified")
        t_parity = time.perf_counter()
        parity = self._gate(built, threshold_quant)
        extra = {**extra, "parity_seconds": round(time.perf_counter() - t_parity, 2)}
        if (parity.status == "failed" and quant == "int8" and built.suffix == ".tflite" and self.calib is not None
                and not self.src.is_qat):
            parity = self._int8_repair(built, meta, parity, extra)
        meta.extra["parity"] = parity.to_dict()
        kept = parity.passed or self.keep_failed
        if kept:
            write_metadata(built, meta, final)
        return ConvertResult(fmt.name, self._quant_label(quant), final if kept else None,
                             final.stat().st_size if kept else 0, time.perf_counter() - t0, parity, kept, notes, extra)

    def _gate(self, built: Path, quant: str) -> Parity:
        """The parity gate on the file at ``built`` (sealed with its metadata already)."""
        return check_parity(self.reference, built, self.images.check, Limits.for_quant(quant, **self.limits),
                            self.images.source, self.images.truth)

    def _int8_repair(self, built: Path, meta: Any, parity: Parity, extra: dict[str, Any]) -> Parity:
        """Per-layer int8 error report beside the convert report; with int8_fallback="auto", the float fallback."""
        from edgeclf.conversion.repair import repair_int8

        def rejudge(path: Path) -> Parity:
            write_metadata(path, meta)
            return self._gate(path, "int8")
        parity, found = repair_int8(self.src.model, self.src.input_shape, self.calib, self.images.check,
                                    self.src.metadata.preprocess, built, parity, rejudge, self.int8_fallback == "auto",
                                    self.out / f"{self.src.stem}_int8_layers.json", self.say)
        extra.update(found)
        meta.extra["conversion"].update(found)
        return parity

    # -- one function per format ------------------------------------------------------------------
    def tflite(self, fmt: Format, quant: str) -> ConvertResult:
        t0 = time.perf_counter()
        name = fmt.filename(self.src.stem, quant)
        built = self.scratch / name
        built.write_bytes(self._tflite_bytes(quant))
        result = self._finish(fmt, quant, built, self.out / name, t0, quant, {}, [])
        if result.path is not None:  # the file carries standard metadata: say when MediaPipe cannot use it
            issues = mediapipe_issues(inspect_tflite_file(result.path), self.src.metadata.preprocess)
            result.notes += [f"{result.path.name}: MediaPipe Tasks: {issue}" for issue in issues]
        return result

    def edgetpu(self, fmt: Format, quant: str) -> ConvertResult:
        from edgeclf.conversion.edgetpu import SCRIPT, check_edgetpu_ready, compile_edgetpu, find_compiler, format_report
        if self.io == "float32":
            raise ConversionError("Edge TPU needs full-integer input/output: use --io uint8 (default) or int8")
        t0 = time.perf_counter()
        ready = self.done.get(("tflite", quant)) or self.tflite(get_format("tflite"), quant)
        if not ready.kept or ready.path is None or not ready.parity or not ready.parity.passed:
            return ConvertResult(fmt.name, ready.quant, None, 0, time.perf_counter() - t0, ready.parity, False)
        check_edgetpu_ready(ready.path)
        compiler = find_compiler()
        if compiler is None:
            note = (f"edgetpu_compiler not found: wrote the compiler-ready {ready.path.name}; "
                    f"compile it on x86-64 Linux with {SCRIPT} {ready.path}")
            return ConvertResult(fmt.name, ready.quant, ready.path, ready.size_bytes, time.perf_counter() - t0,
                                 ready.parity, True, [note], {"compiled": False})
        compiled, report = compile_edgetpu(ready.path, self.scratch, compiler)
        self.say(f"Edge TPU operations for {ready.path.name}:\n{format_report(report)}")
        meta = self.src.metadata.replace(quantization=ready.quant, extra={
            **self.src.metadata.extra, "parity": {**ready.parity.to_dict(), "measured_on": ready.path.name},
            "conversion": {"format": fmt.name, "io": self.io, "edgetpu": report}})
        final = write_metadata(compiled, meta, self.out / compiled.name)
        return ConvertResult(fmt.name, ready.quant, final, final.stat().st_size, time.perf_counter() - t0,
                             ready.parity, True, [f"parity measured on the CPU int8 file {ready.path.name}"],
                             {"compiled": True, "edgetpu": report})

    def onnx(self, fmt: Format, quant: str) -> ConvertResult:
        t0 = time.perf_counter()
        name = fmt.filename(self.src.stem, quant)
        built = self._onnx_file(name, quant)
        return self._finish(fmt, quant, built, self.out / name, t0, quant, {"opset": self.opset}, [])

    def tensorrt(self, fmt: Format, quant: str) -> ConvertResult:
        from edgeclf.conversion.tensorrt import PRECISIONS, SCRIPT, engine_precision, find_trtexec, trtexec_command
        t0 = time.perf_counter()
        name = fmt.filename(self.src.stem, quant)
        final = self.out / name
        built = self._onnx_file(name, "int8" if quant == "int8" else "fp32")  # int8: the QDQ ONNX, scales inside
        engine = final.with_name(f"{self.src.stem}_{quant}.engine")
        extra: dict[str, Any] = {"opset": self.opset, "precision": PRECISIONS[quant],
                                 "trtexec": trtexec_command(final.name, engine.name, quant)}
        notes = [f"parity measured on the ONNX the engine is built from (ONNX Runtime CPU); the {quant} engine "
                 "itself is checked only on the Jetson"]
        result = self._finish(fmt, quant, built, final, t0, "int8" if quant == "int8" else "fp32", extra, notes)
        if not result.kept:
            return result
        trtexec = find_trtexec()
        if trtexec is None:
            result.notes.append(f"trtexec not found: build the engine on the Jetson with {SCRIPT} {final} {quant}")
            return result
        with atomic_path(engine) as tmp:
            run = subprocess.run(trtexec_command(final, tmp, quant, trtexec=trtexec), capture_output=True, text=True)
            if run.returncode != 0:
                last = next((ln for ln in reversed((run.stdout + run.stderr).splitlines()) if ln.strip()), "")
                raise ConversionError(f"{final}: trtexec failed (exit {run.returncode}): {last.strip()}")
        built_as = engine_precision(run.stdout + run.stderr)  # the engine's label is what trtexec says it built
        result.extra |= {"engine": engine.name, "engine_precision": built_as}
        if quant == "int8" and "int8" not in (built_as or ""):
            result.notes.append(f"{engine.name}: trtexec reports precision {built_as or 'unknown'}, not int8")
        return result


def batch_size(batch: int | str | None, jobs: list[tuple[Format, str]]) -> int | None:
    """The traced batch dimension: 1, or None for a dynamic one (``0``/``"dynamic"``), which Edge TPU and
    TensorRT files cannot have."""
    if str(batch).lower() in ("0", "dynamic", "none"):
        fixed = [fmt.title for fmt, _ in jobs if fmt.name in ("edgetpu", "tensorrt")]
        if fixed:
            raise ConversionError(f"{fixed[0]} files need batch 1; convert them without --batch")
        return None
    if str(batch) != "1":
        raise ConversionError(f"--batch must be 1 or dynamic (0), got {batch!r}; a dynamic batch runs any batch "
                              "size and is what bench --batch measures")
    return 1


def _settle_output_kind(src: Source) -> None:
    """Record in the metadata whether the model outputs probabilities or logits (probing it once if unknown)."""
    if src.metadata.output == "auto":
        probe = np.asarray(src.model.predict(np.zeros((1, *src.input_shape), np.float32), verbose=0))
        src.metadata = src.metadata.replace(output="probabilities" if looks_like_probabilities(probe) else "logits")


def print_results(results: list[ConvertResult], console: Any = None) -> None:
    """The short table of what was written: format, quantisation, file, size and gzip size, the gate's figures,
    seconds; a line per file with its zstd and brotli sizes when those coders are installed."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="edgeclf convert")
    numeric = ("size", "gzip", "decisive flips", "accuracy", "top-1 agr.", "top-5", "KL", "seconds")
    for col in ("format", "quant", "file", "gate", *numeric):
        table.add_column(col, justify="right" if col in numeric else "left")
    for r in results:
        p = r.parity
        acc = f"{p.source_accuracy:.3f}->{p.file_accuracy:.3f}" if p and p.labelled else "-"
        table.add_row(r.format, r.quant, r.path.name if r.path else "(not kept)", p.status if p else "-",
                      f"{r.size_bytes / 1e6:.2f} MB" if r.size_bytes else "-",
                      f"{r.compressed['gzip'] / 1e6:.2f} MB" if r.compressed else "-",
                      f"{p.flips}/{p.decisive}" if p else "-", acc, f"{p.agreement:.3f}" if p else "-",
                      f"{p.top5_overlap:.3f}" if p else "-", f"{p.mean_kl:.4f}" if p else "-", f"{r.seconds:.1f}")
    console = console or Console()
    console.print(table)
    for r in results:
        if r.parity and not r.parity.passed:
            console.print(f"{r.format} {r.quant}: {r.parity.reason}")
        for note in r.notes:
            console.print(f"{r.format}: {note}")
        if len(r.compressed) > 1 and r.path is not None:
            console.print(f"{r.path.name}: compressed " + ", ".join(f"{name} {size / 1e6:.2f} MB"
                                                                    for name, size in r.compressed.items()))


def convert(model: str | os.PathLike, to: str | Sequence[str] = "tflite", quant: str | Sequence[str] | None = None,
            io: str = "uint8", calib: str | os.PathLike | None = None, calib_samples: int = 200,
            check: str | os.PathLike | None = None, opset: int = 17,
            labels: str | os.PathLike | Sequence[str] | None = None,
            mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
            color: str | None = None, resize: str | None = None, out: str | os.PathLike = "converted",
            margin: float | None = None, max_flip_rate: float | dict[str, float] | None = None,
            max_accuracy_drop: float | dict[str, float] | None = None, int8_fallback: str = "off",
            keep_failed: bool = False, allow_select_ops: bool = False, batch: int | str = 1,
            unsafe_load: bool = False, verbose: bool = True) -> list[ConvertResult]:
    """Convert MODEL (run folder, .keras, .h5, SavedModel) to each ``to`` format and ``quant`` mode.

    ``to``/``quant`` take one name, a comma-separated string or a list (``to="all"``: every format, each
    in the requested modes it supports). The gate (``parity``) takes ``margin``, ``max_flip_rate`` and
    ``max_accuracy_drop`` (a number, or a dict per quantisation mode); ``int8_fallback="auto"`` keeps the fewest
    worst-quantised layers of a failing int8 TFLite file in float. Raises ``ConversionError`` naming every file
    that failed or could not be verified; the other files are written and listed in ``<out>/convert_report.json``.
    ``batch``: 1, or 0/"dynamic" for a dynamic batch dimension (TFLite and ONNX only). ``unsafe_load``: see
    ``keras_io.load_model``.
    """
    jobs = plan(to, quant)
    traced_batch = batch_size(batch, jobs)
    if io not in IO_TYPES:
        raise ConversionError(f"unknown --io {io!r}; choose from {', '.join(IO_TYPES)}")
    if not 8 <= int(opset) <= 21:
        raise ConversionError(f"ONNX opset {opset} is outside the range tf2onnx supports (8..21)")
    if calib_samples < 1:
        raise ConversionError(f"calib_samples must be at least 1, got {calib_samples}")
    if int8_fallback not in INT8_FALLBACK:
        raise ConversionError(f"unknown int8_fallback {int8_fallback!r}; choose from {', '.join(INT8_FALLBACK)}")
    if margin is not None and not 0 <= margin < 1:
        raise ConversionError(f"margin must be in [0, 1), got {margin}")
    from rich.console import Console
    console = Console(stderr=True, quiet=not verbose)
    src = load_source(model, labels, mean, std, color, resize, unsafe_load=unsafe_load)
    # a QAT run's float files come from its float model: the QAT graph's fake-quant ops have no float meaning
    float_src = (load_source(model, labels, mean, std, color, resize, float_model=True,
                             unsafe_load=unsafe_load)
                 if src.is_qat and has_float_model(model) and any(q != "int8" for _, q in jobs) else src)
    need_calib = any(q == "int8" and not src.is_qat for _, q in jobs)
    test_npz = src.path / "test.npz" if src.path.is_dir() and (src.path / "test.npz").is_file() else None
    images = choose(src.metadata.preprocess, src.metadata.labels, calib, src.calib_npz, test_npz, calib_samples,
                    check, need_calib)
    limits = {"margin": margin, "max_flip_rate": max_flip_rate, "max_accuracy_drop": max_accuracy_drop}
    for s in {id(src): src, id(float_src): float_src}.values():
        _settle_output_kind(s)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[ConvertResult] = []
    with tempfile.TemporaryDirectory(prefix=".edgeclf-convert-", dir=out_dir) as scratch:
        def converter(s: Source) -> _Converter:
            return _Converter(s, out_dir, io, images, opset, limits, int8_fallback, keep_failed, allow_select_ops,
                              Path(scratch), console.print, traced_batch)
        conv = converter(src)
        conv_float = converter(float_src) if float_src is not src else conv
        for fmt, q in jobs:
            c = conv_float if q != "int8" else conv
            with console.status(f"converting {src.path.name} to {fmt.title} {q} ..."):
                result = getattr(c, fmt.name)(fmt, q)
            c.done[(fmt.name, q)] = result
            if result.path is not None:
                result.compressed = compressed_sizes(result.path.read_bytes())
            results.append(result)
    atomic_write_text(out_dir / "convert_report.json", json.dumps(
        {"model": str(src.path), "results": [r.to_dict() for r in results]}, indent=2))
    if verbose:
        print_results(results, console)
    failed = [r for r in results if r.parity is not None and not r.parity.passed]
    if failed:
        error = ConversionError("; ".join(
            f"{r.format} {r.quant} {'could not be verified' if r.parity.status == 'unverified' else 'failed the parity gate'}: "
            f"{r.parity.summary()}"
            + (f" (kept as {r.path})" if r.kept and r.path else " - nothing written") for r in failed))
        error.results = results  # what was written and what was refused, for API callers
        raise error
    return results


__all__ = ["convert", "ConvertResult", "plan", "print_results"]
