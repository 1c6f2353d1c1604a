"""``edgeclf.bench``: latency, throughput, memory, size and accuracy of model files per device, honestly measured.

Each (file, device) pair is measured by ``edgeclf.benchmark.worker`` in a fresh Python process, so its peak
memory is its own and a crash is one failed row. A training run folder is first converted to every
format of ``edgeclf.artifact.formats`` (as ultralytics' benchmark does), each row saying whether the conversion
passed, failed its accuracy check, or failed. A device that is not present is a row saying what to
install; a CPU figure is never reported under another device's name.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from edgeclf.runtime.devices import DEVICES
from edgeclf.errors import ConversionError, DataError, EdgeclfError, first_line
from edgeclf.artifact.formats import Format, format_of, is_keras_source
from edgeclf.artifact.sizes import CODERS, compressed_sizes
from edgeclf.benchmark.machine import machine_info

FLOAT_QUANTS = ("fp32", "float")   # "float": a foreign file with float input and no edgeclf metadata
RUN_FOLDER_QUANTS = "fp32,int8"


def parse_devices(device: str | Sequence[str]) -> list[str]:
    """``"cpu,gpu"`` or ``["cpu", "gpu"]`` -> checked, de-duplicated device names."""
    names = device.split(",") if isinstance(device, str) else list(device)
    out = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    bad = [n for n in out if n not in DEVICES]
    if bad or not out:
        raise EdgeclfError(f"unknown device {bad[0] if bad else device!r}; choose from {', '.join(DEVICES)}")
    return out


def _check_args(runs: int, warmup: int, max_secs: float, threads: int | None, batch: Sequence[int]) -> None:
    if runs < 1:
        raise EdgeclfError(f"runs must be at least 1, got {runs}")
    if warmup < 0:
        raise EdgeclfError(f"warmup must not be negative, got {warmup}")
    if not max_secs > 0:
        raise EdgeclfError(f"max_secs must be positive, got {max_secs}")
    if threads is not None and threads < 1:
        raise EdgeclfError(f"threads must be at least 1, got {threads}")
    if not batch or any(int(b) < 1 for b in batch):
        raise EdgeclfError(f"batch sizes must be at least 1, got {list(batch)}")


def file_sizes(path: Path) -> dict[str, int | None]:
    """Size on disk and compressed by each installed coder (what a download or OTA update costs), as
    ``size_bytes``, ``gzip_bytes``, ``zstd_bytes``, ``brotli_bytes``; None when unreadable or not installed."""
    try:
        data = path.read_bytes()
    except OSError:
        return {"size_bytes": None, **{f"{name}_bytes": None for name in CODERS}}
    packed = compressed_sizes(data)
    return {"size_bytes": len(data), **{f"{name}_bytes": packed.get(name) for name in CODERS}}


def _format_name(path: str | os.PathLike) -> str:
    try:
        return format_of(path).name
    except EdgeclfError:
        return Path(path).suffix.lstrip(".").lower() or "?"


def _crash_reason(proc: subprocess.CompletedProcess) -> str:
    code = proc.returncode
    how = (f"killed by signal {signal.Signals(-code).name}" if code < 0 and -code in signal.valid_signals()
           else f"exited with code {code}")
    last = next((ln.strip() for ln in reversed(proc.stderr.splitlines()) if ln.strip()), "")
    return f"the measuring process {how}" + (f": {last[:300]}" if last else "")


def run_worker(job: dict[str, Any], timeout: float, module: str = "edgeclf.benchmark.worker") -> dict[str, Any]:
    """Measure one job in a fresh ``python -m <module>`` process; a crash becomes a failed result."""
    with tempfile.TemporaryDirectory(prefix="edgeclf-bench-") as tmp:
        job_file = Path(tmp) / "job.json"
        job_file.write_text(json.dumps(job), encoding="utf-8")
        try:
            proc = subprocess.run([sys.executable, "-m", module, str(job_file)],
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": f"failed: measuring took longer than {timeout:.0f} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"status": f"failed: {_crash_reason(proc)}"}
    try:
        return json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"status": f"failed: the measuring process printed no result ({lines[-1][:200]})"}


def _record(model: str, fmt: str, device: str, threads: int | None, machine: dict[str, Any],
            sizes: dict[str, int | None], result: dict[str, Any],
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One output row: identity, status, sizes, then the worker's figures (None where not measured)."""
    rec: dict[str, Any] = {"model": model, "format": fmt, "quant": result.get("quant"), "device": device,
                           "status": result["status"], **sizes}
    for key in ("init_ms", "first_ms", "warmup_runs", "warmup_ms", "runs", "latency_ms", "fps", "throughput",
                "peak_rss_mb", "baseline_rss_mb"):
        rec[key] = result.get(key)
    for key in ("accuracy", "top5_accuracy", "data_images", "top1"):
        if key in result:
            rec[key] = result[key]
    rec.update({"backend": result.get("backend"), "threads": threads, "input": result.get("input")})
    rec.update(extra or {})
    rec["machine"] = machine
    return rec


def load_data_job(data: str | os.PathLike) -> dict[str, Any]:
    """The class-per-folder set as the workers receive it (scanned and checked once, here)."""
    from edgeclf.data.loaders import load_folder
    ds = load_folder(data)  # raises DataError naming the folder when it has no (decodable) images
    return {"root": str(data), "class_names": ds.class_names, "labels": ds.labels.tolist(),
            "paths": [str(p) for p in ds.paths or []]}


SOURCE_OPTIONS = ("labels", "mean", "std", "color", "resize")  # what convert() takes of the runtime options


def runtime_options(labels: str | os.PathLike | Sequence[str] | None, **options: Any) -> dict[str, Any]:
    """The ``Runtime`` overrides a worker process gets: those given, a labels file as an absolute path."""
    if isinstance(labels, (str, os.PathLike)):
        labels = str(Path(labels).resolve())
    return {k: v for k, v in dict(options, labels=labels).items() if v is not None}


def convert_one(source: Path, fmt: Format, quant: str, out: Path, runtime: dict[str, Any]) -> tuple[str | None, str]:
    """Convert ``source`` to one (format, quant); (file or None, status) in ultralytics' three outcomes."""
    from edgeclf.conversion.pipeline import convert
    runtime = {k: v for k, v in runtime.items() if k in SOURCE_OPTIONS}
    report = out / "convert_report.json"
    report.unlink(missing_ok=True)
    try:
        result = convert(source, to=fmt.name, quant=quant, out=out, keep_failed=True, verbose=False, **runtime)[-1]
    except ConversionError as exc:
        kept = json.loads(report.read_text())["results"] if report.is_file() else []
        path = next((r["path"] for r in kept if r["format"] == fmt.name and r["path"]), None)
        return (path, f"failed accuracy check: {exc}") if path else (None, f"conversion failed: {exc}")
    except Exception as exc:  # one format's converter failing must not stop the others (ultralytics does the same)
        return None, f"conversion failed: {type(exc).__name__}: {first_line(exc)}"
    if result.extra.get("compiled") is False:
        return None, f"unavailable: {'; '.join(result.notes)}"
    return str(result.path), "passed"


class _Session:
    """The rows of one ``bench`` call: what every worker is told, and the records gathered so far."""

    def __init__(self, devices: list[str], job: dict[str, Any], timeout: float, bar: Any, task: Any) -> None:
        self.devices, self.job, self.timeout, self.bar, self.task = devices, job, timeout, bar, task
        self.machine = machine_info()
        self.records: list[dict[str, Any]] = []
        self._sizes: dict[str, dict[str, int | None]] = {}

    def row(self, model: str, fmt: str, device: str, result: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        if model not in self._sizes:  # compressing a large file takes seconds: once per file, not per device
            self._sizes[model] = file_sizes(Path(model))
        self.records.append(_record(model, fmt, device, self.job["threads"], self.machine, self._sizes[model],
                                    result, extra))

    def measure(self, path: str, fmt: str, device: str, extra: dict[str, Any] | None = None) -> None:
        self.bar.update(self.task, description=f"{Path(path).name} on {device}")
        self.row(path, fmt, device, run_worker({**self.job, "model": path, "device": device}, self.timeout), extra)

    def model_file(self, model: str) -> None:
        for dev in self.devices:
            self.measure(model, _format_name(model), dev)
            self.bar.advance(self.task)

    def source(self, model: str, quant: str | Sequence[str], out: Path) -> None:
        """Convert a run folder / Keras file to every format (in ``quant`` modes) and measure what it ran on."""
        from edgeclf.conversion.pipeline import plan
        jobs = plan("all", quant)
        self.bar.update(self.task, total=self.bar.tasks[self.task].total - 1 + len(jobs))
        extra = {"source": model}
        for fmt, q in jobs:
            runs_on = [d for d in self.devices if d in fmt.devices]
            path, status = None, ""
            if runs_on:
                self.bar.update(self.task, description=f"converting {Path(model).name} to {fmt.title} {q}")
                path, status = convert_one(Path(model), fmt, q, out, self.job["runtime"])
            for dev in self.devices:
                if dev in runs_on and path is not None:
                    self.measure(path, fmt.name, dev, extra)
                    if status != "passed" and self.records[-1]["status"] == "passed":
                        self.records[-1]["status"] = status
                else:
                    skipped = f"skipped: {fmt.title} files run on {', '.join(fmt.devices)}"
                    self.row(path or model, fmt.name, dev, {"status": status if dev in runs_on else skipped,
                                                            "quant": q}, extra)
            self.bar.advance(self.task)


def bench(models: Sequence[str | os.PathLike], device: str | Sequence[str] = "cpu", threads: int | None = None,
          runs: int = 200, warmup: int = 20, max_secs: float = 60.0, batch: Sequence[int] = (1,),
          data: str | os.PathLike | None = None, labels: str | os.PathLike | Sequence[str] | None = None,
          mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
          color: str | None = None, resize: str | None = None, crop_ratio: float | None = None,
          input_size: tuple[int, int] | int | None = None, output: str | None = None,
          quant: str | Sequence[str] = RUN_FOLDER_QUANTS, convert_dir: str | os.PathLike | None = None,
          progress: bool = True) -> list[dict[str, Any]]:
    """Measure each model file (or run folder, converted first) on each device; one record per pair.

    ``device`` takes one name, a comma-separated string or a list. ``labels``/``mean``/``std``/``color``/
    ``resize``/``crop_ratio``/``input_size``/``output`` describe files made elsewhere (as for ``Runtime``). ``data`` (a class-per-folder set) adds
    top-1/top-5 accuracy and top-1 agreement with the first float model. A run folder is converted into
    ``convert_dir`` (default ``<run>/bench``) to each format of the formats table in the ``quant`` modes
    it supports.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    devices = parse_devices(device)
    batches = sorted({int(b) for b in batch})
    _check_args(runs, warmup, max_secs, threads, batches)
    if not models:
        raise EdgeclfError("no model given")
    runtime = runtime_options(labels, mean=mean, std=std, color=color, resize=resize, crop_ratio=crop_ratio,
                              input_size=input_size, output=output)
    data_job = load_data_job(data) if data is not None else None
    n_images = len(data_job["labels"]) if data_job else 0
    timeout = 120 + max_secs * (2 + 2 * len(batches)) + 2.0 * n_images
    job = {"threads": threads, "runs": runs, "warmup": warmup, "max_secs": max_secs, "batch": batches,
           "runtime": runtime, "data": data_job}
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True, quiet=not progress), transient=True) as bar:
        task = bar.add_task("benchmarking", total=sum(1 if is_keras_source(m) else len(devices) for m in models))
        session = _Session(devices, job, timeout, bar, task)
        for model in map(str, models):
            if is_keras_source(model):
                session.source(model, quant, Path(convert_dir) if convert_dir else Path(model) / "bench")
            else:
                session.model_file(model)
    add_agreement(session.records)
    return session.records


def add_agreement(records: list[dict[str, Any]]) -> None:
    """Top-1 agreement of each measured row with the first float row (its per-image top-1 is then dropped)."""
    ref = next((r for r in records if r.get("top1") is not None and r.get("quant") in FLOAT_QUANTS), None)
    ref_top1 = ref["top1"] if ref is not None else None
    for r in records:
        top1 = r.pop("top1", None)
        if top1 is not None and ref_top1 is not None:
            r["agreement"] = round(sum(a == b for a, b in zip(top1, ref_top1)) / len(top1), 6)
            r["agreement_with"] = ref["model"]


def problems(records: list[dict[str, Any]], devices: Sequence[str]) -> list[str]:
    """Why a benchmark should exit non-zero: rows that failed, or none of the requested devices available."""
    out = []
    failed = [r for r in records if r["status"].startswith(("failed", "conversion failed"))]
    if failed:
        out.append(f"{len(failed)} of {len(records)} rows failed: " + "; ".join(
            f"{Path(r['model']).name} ({r['format']}, {r['device']})" for r in failed[:5])
            + ("; ..." if len(failed) > 5 else ""))
    available = {r["device"] for r in records if not r["status"].startswith(("unavailable", "skipped"))}
    if records and not available & set(devices):
        out.append(f"none of the requested devices ({', '.join(devices)}) was available")
    return out


def _key(rec: dict[str, Any]) -> tuple[str, str, str]:
    return Path(str(rec.get("model") or "")).name, str(rec.get("format")), str(rec.get("device"))


def load_reference(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A reference JSON written by ``--json`` (a list of records); one clear error when it is not one."""
    p = Path(path)
    try:
        records = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: unreadable reference ({type(exc).__name__}: {exc})") from None
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"model", "format", "device"} <= r.keys()
                                                for r in records):
        raise DataError(f"{p}: not an 'edgeclf bench --json' file (expected a list of records with "
                        "model, format and device)")
    return records


def compare(records: list[dict[str, Any]], reference: list[dict[str, Any]], tolerance: float) -> list[dict[str, Any]]:
    """p50 of each row over the reference row of the same file name, format and device.

    ``verdict`` is ``slower`` when the ratio exceeds ``1 + tolerance``, ``ok`` otherwise, ``no reference``
    when either side has no p50.
    """
    ref = {_key(r): (r.get("latency_ms") or {}).get("p50") for r in reference}
    out = []
    for r in records:
        now, before = (r.get("latency_ms") or {}).get("p50"), ref.get(_key(r))
        ratio = round(now / before, 4) if now and before else None
        verdict = "no reference" if ratio is None else "slower" if ratio > 1 + tolerance else "ok"
        out.append({"model": r["model"], "format": r["format"], "device": r["device"], "p50_ms": now,
                    "ref_p50_ms": before, "ratio": ratio, "verdict": verdict})
    return out
