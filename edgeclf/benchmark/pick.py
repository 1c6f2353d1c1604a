"""``bench --pick``: the fastest file, backend, device and thread count here that keeps accuracy within a bound.

Candidates are every given file (a run folder is converted first to the formats that run on the devices)
on every backend that opens it, on every device its format runs on, at 1..cores threads on the CPU. Quality
is measured once per (file, backend, device) in a process of its own: accuracy on class folders, else top-1
agreement with the float file on check images. Latency is measured for all candidates that loaded side by
side in one process (``alternate``). The pick is the fastest candidate within ``max_drop`` percentage points
of the float file (of the most accurate file when no float file is given); when none is, nothing is picked.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgeclf.artifact.formats import format_of, is_keras_source
from edgeclf.benchmark.machine import machine_info
from edgeclf.benchmark.pick_worker import SYNTHETIC_IMAGES
from edgeclf.benchmark.session import (FLOAT_QUANTS, RUN_FOLDER_QUANTS, convert_one, load_data_job, parse_devices,
                                      run_worker, runtime_options)
from edgeclf.errors import EdgeclfError
from edgeclf.runtime.backends import backends_for
from edgeclf.runtime.deploy import write_deploy
from edgeclf.runtime.devices import DEVICES
from edgeclf.runtime.images import IMAGE_SUFFIXES, decodes

PICK_WORKER = "edgeclf.benchmark.pick_worker"
PER_ROUND = 10


@dataclass
class PickResult:
    """Every candidate row, the Pareto front (row indices), the pick (a row index or None) and why."""

    rows: list[dict[str, Any]]
    metric: str                           # "accuracy" (class folders) or "agreement" (with the float file)
    reference: dict[str, Any]             # the row quality is measured against, and its figure
    max_drop: float                       # percentage points
    front: list[int] = field(default_factory=list)
    choice: int | None = None
    message: str = ""
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def picked(self) -> dict[str, Any] | None:
        """The chosen row, or None when no candidate met the bound."""
        return None if self.choice is None else self.rows[self.choice]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``--json`` writes."""
        return {"metric": self.metric, "reference": self.reference, "max_drop_pp": self.max_drop,
                "pick": self.picked, "message": self.message, "pareto_front": self.front, "rows": self.rows,
                "machine": self.machine}


def thread_counts(threads: int | Sequence[int] | None) -> list[int]:
    """The thread counts to try: those given, else 1 to the number of usable cores."""
    if threads is None:
        return list(range(1, machine_info().get("cores_usable", 1) + 1))
    out = sorted({int(t) for t in ([threads] if isinstance(threads, int) else threads)})
    if not out or out[0] < 1:
        raise EdgeclfError(f"thread counts must be at least 1, got {threads}")
    return out


def sample_paths(folder: str | os.PathLike) -> list[str]:
    """The images under ``folder`` (recursively) that decode, sorted; one clear error when there are none."""
    paths = sorted(str(p) for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and decodes(p))
    if not paths:
        raise EdgeclfError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to check agreement on")
    return paths


def _files(models: Sequence[str], devices: list[str], quant: str | Sequence[str], convert_dir: str | None,
           runtime: dict[str, Any], say: Any) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """(file, note) of each model file, run folders converted to the formats that run on ``devices``; failed rows."""
    files, failed = [], []
    for model in models:
        if not is_keras_source(model):
            files.append((model, ""))
            continue
        from edgeclf.conversion.pipeline import plan
        out = Path(convert_dir) if convert_dir else Path(model) / "bench"
        for fmt, q in plan("all", quant):
            if not set(fmt.devices) & set(devices):
                continue
            say(f"converting {Path(model).name} to {fmt.title} {q}")
            path, status = convert_one(Path(model), fmt, q, out, runtime)
            if path is None:
                failed.append({"model": model, "format": fmt.name, "quant": q, "backend": None, "device": None,
                               "threads": None, "status": status})
            else:
                files.append((path, "" if status == "passed" else f"conversion: {status}"))
    return files, failed


def _row(path: str, backend: str, device: str, threads: int | None, probe: dict[str, Any], note: str) -> dict[str, Any]:
    row = {"model": path, "format": format_of(path).name, "quant": probe.get("quant"), "backend": backend,
           "engine": probe.get("engine"), "device": device, "threads": threads, "status": probe["status"]}
    for key in ("accuracy", "top5_accuracy", "data_images", "top1"):
        if key in probe:
            row[key] = probe[key]
    if note:
        row["note"] = note
    return row


def _reference(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The float file's row (its default backend, first device) or, with accuracy and no float file, the best row."""
    ok = [r for r in rows if r["status"] == "passed"]
    ref = next((r for r in ok if r["quant"] in FLOAT_QUANTS), None)
    if ref is None and metric == "accuracy" and ok:
        ref = max(ok, key=lambda r: r["accuracy"])
        return {"model": ref["model"], "backend": ref["backend"], "accuracy": ref["accuracy"],
                "note": "no float file among the candidates: the most accurate file is the reference"}
    if ref is None:
        raise EdgeclfError("no float file loaded to judge agreement against: give the float file too, or --data "
                           "(class folders) to judge accuracy")
    out = {"model": ref["model"], "backend": ref["backend"], "device": ref["device"]}
    if metric == "accuracy":
        out["accuracy"] = ref["accuracy"]
    else:
        out["top1"] = ref["top1"]
    return out


def _score(rows: list[dict[str, Any]], metric: str, ref: dict[str, Any]) -> None:
    """Each loaded row's agreement (or accuracy) and its drop in percentage points from the reference."""
    ref_top1 = ref.pop("top1", None)
    for r in rows:
        top1 = r.pop("top1", None)
        if r["status"] != "passed":
            continue
        if metric == "agreement":
            r["agreement"] = round(sum(a == b for a, b in zip(top1, ref_top1)) / len(top1), 6)
            r["drop_pp"] = round(100 * (1 - r["agreement"]), 4)
        else:
            r["drop_pp"] = round(100 * (ref["accuracy"] - r["accuracy"]), 4)


def pareto_front(rows: list[dict[str, Any]], metric: str) -> list[int]:
    """Indices of the timed rows no other row beats on both latency and quality, fastest first."""
    timed = sorted((r["latency_ms"]["median"], -r[metric], i) for i, r in enumerate(rows)
                   if r["status"] == "passed" and r.get("latency_ms"))
    front, best = [], None
    for _, neg_quality, i in timed:
        if best is None or -neg_quality > best:
            front.append(i)
            best = -neg_quality
    return front


def choose(rows: list[dict[str, Any]], max_drop: float) -> tuple[int | None, str]:
    """The fastest timed row within ``max_drop`` pp, and a one-line verdict; None (and why) when no row is."""
    timed = [(r["latency_ms"]["median"], i) for i, r in enumerate(rows)
             if r["status"] == "passed" and r.get("latency_ms")]
    if not timed:
        return None, "no candidate could be timed"
    within = [(ms, i) for ms, i in timed if rows[i]["drop_pp"] <= max_drop + 1e-9]
    if not within:
        best = min((rows[i] for _, i in timed), key=lambda r: r["drop_pp"])
        return None, (f"no candidate is within {max_drop:g} pp of the reference (the closest, "
                      f"{Path(best['model']).name} on {best['backend']}, drops {best['drop_pp']:g} pp): nothing picked")
    ms, i = min(within)
    r = rows[i]
    return i, (f"picked {Path(r['model']).name} on {r['backend']} ({r['device']}, {r['threads'] or 'default'} "
               f"threads): {ms:.3f} ms median, {r['drop_pp']:g} pp below the reference (bound {max_drop:g} pp)")


def pick(models: Sequence[str | os.PathLike], device: str | Sequence[str] = DEVICES,
         threads: int | Sequence[int] | None = None, max_drop: float = 1.0, data: str | os.PathLike | None = None,
         samples: str | os.PathLike | None = None, runs: int = 200, warmup: int = 20, max_secs: float = 120.0,
         labels: str | os.PathLike | Sequence[str] | None = None, mean: float | Sequence[float] | None = None,
         std: float | Sequence[float] | None = None, color: str | None = None, resize: str | None = None,
         crop_ratio: float | None = None, input_size: tuple[int, int] | int | None = None, output: str | None = None,
         quant: str | Sequence[str] = RUN_FOLDER_QUANTS, convert_dir: str | os.PathLike | None = None,
         deploy: str | os.PathLike | None = None, progress: bool = True) -> PickResult:
    """Measure every candidate (file x backend x device x threads) and pick the fastest within ``max_drop`` pp.

    ``data``: class folders (accuracy); else ``samples`` (a folder of images) or seeded synthetic frames
    (top-1 agreement with the float file). ``runs`` timed calls per candidate in blocks of 10 (fewer when
    ``max_secs`` runs out). ``deploy``: where to write the deploy.json of the pick (default: next to the
    picked file; nothing is written when nothing is picked).
    """
    from rich.console import Console
    console = Console(stderr=True, quiet=not progress)
    if not models:
        raise EdgeclfError("no model given")
    if max_drop < 0:
        raise EdgeclfError(f"max_drop must not be negative, got {max_drop}")
    devices, counts = parse_devices(device), thread_counts(threads)
    runtime = runtime_options(labels, mean=mean, std=std, color=color, resize=resize, crop_ratio=crop_ratio,
                              input_size=input_size, output=output)
    base = {"runtime": runtime, "data": load_data_job(data) if data is not None else None,
            "samples": sample_paths(samples) if samples is not None and data is None else None}
    metric = "accuracy" if data is not None else "agreement"
    n_images = len(base["data"]["labels"]) if base["data"] else len(base["samples"] or []) or SYNTHETIC_IMAGES
    with console.status("preparing") as status:
        files, rows = _files(list(map(str, models)), devices, quant, convert_dir and str(convert_dir), runtime,
                             status.update)
        candidates = []
        for path, note in files:
            fmt = format_of(path)
            for backend in backends_for(fmt.container):
                for dev in (d for d in devices if d in fmt.devices):
                    status.update(f"checking {Path(path).name} on {backend} ({dev})")
                    probe = run_worker({**base, "kind": "quality", "model": path, "backend": backend, "device": dev},
                                       120 + 2.0 * n_images, PICK_WORKER)
                    if probe["status"] != "passed":
                        rows.append(_row(path, backend, dev, None, probe, note))
                        continue
                    for t in (counts if dev == "cpu" else [None]):
                        rows.append(_row(path, backend, dev, t, probe, note))
                        candidates.append(len(rows) - 1)
        ref = _reference(rows, metric)
        _score(rows, metric, ref)
        status.update(f"timing {len(candidates)} candidates side by side")
        job = {**base, "kind": "latency", "data": None, "samples": None, "rounds": -(-runs // PER_ROUND),
               "per_round": PER_ROUND, "warmup": warmup, "max_secs": max_secs,
               "candidates": [{k: rows[i][k] for k in ("model", "backend", "device", "threads")} for i in candidates]}
        timed = run_worker(job, 300 + 3 * max_secs, PICK_WORKER) if candidates else {"status": "passed", "results": []}
    for j, i in enumerate(candidates):
        rows[i].update(timed["results"][j] if timed["status"] == "passed" else {"status": timed["status"]})
    result = PickResult(rows, metric, ref, max_drop, pareto_front(rows, metric), machine=machine_info())
    result.choice, result.message = choose(rows, max_drop)
    if result.picked is not None:
        r = result.picked
        target = Path(deploy) if deploy else Path(r["model"]).parent / "deploy.json"
        provenance = {"measured": {k: r.get(k) for k in ("latency_ms", "runs", metric, "drop_pp", "engine", "quant")},
                      "reference": ref, "max_drop_pp": max_drop, "machine": result.machine}
        write_deploy(target, r["model"], r["backend"], r["device"], r["threads"], runtime, provenance)
        result.message += f"; wrote {target}"
    return result
