"""``bench --pick``: the fastest file, backend, device and thread count here whose answers stay within a bound.

Candidates are every given file (a run folder is converted first to the formats that run on the devices)
on every backend that opens it, on every device its format runs on, at 1..cores threads on the CPU. Each
(file, backend, device) runs the check images once in a process of its own (threads do not change the
answers) and saves its probabilities; each is then judged against the reference - the float file, or on class
folders without one the most accurate file - by the convert gate's rules (``edgeclf.evaluation.parity``):
flips among *decisive* images (the reference's top-1 leads its runner-up by at least 0.2, so near-ties that
rounding flips do not count) and, on class folders, the accuracy drop, each with a one-sided 95 %
Clopper-Pearson bound against ``max_drop``. A row's ``drop_pp`` is the point estimate (the accuracy drop on
class folders, else the flip rate among decisive images); the row is within the bound when that is at most
``max_drop`` and the gate did not fail it. Latency is measured for all candidates that loaded side by side in
one process (``alternate``). The pick is the fastest candidate within the bound; its message states the
evidence and says when the 95 % bound does not confirm it. When no candidate is within, nothing is picked.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgeclf.artifact.formats import format_of, is_keras_source
from edgeclf.benchmark.machine import machine_info
from edgeclf.benchmark.pick_worker import SYNTHETIC_IMAGES
from edgeclf.benchmark.session import (FLOAT_QUANTS, RUN_FOLDER_QUANTS, convert_one, load_data_job, parse_devices,
                                      run_worker, runtime_options)
from edgeclf.errors import EdgeclfError
from edgeclf.evaluation.parity import DEFAULT_MARGIN, Limits, Parity, judge, needed
from edgeclf.runtime.backends import backends_for
from edgeclf.runtime.deploy import write_deploy
from edgeclf.runtime.devices import DEVICES
from edgeclf.runtime.images import IMAGE_SUFFIXES, decodes

PICK_WORKER = "edgeclf.benchmark.pick_worker"
PER_ROUND = 10
Key = tuple[str, str, str]  # (file, backend, device): what one quality measurement covers


@dataclass
class PickResult:
    """Every candidate row, the Pareto front (row indices), the pick (a row index or None) and why."""

    rows: list[dict[str, Any]]
    metric: str                           # what drop_pp measures: "accuracy" (class folders) or "flips" (decisive)
    reference: dict[str, Any]             # the row quality is measured against, and its figure
    max_drop: float                       # percentage points
    front: list[int] = field(default_factory=list)
    choice: int | None = None
    message: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    check: dict[str, Any] = field(default_factory=dict)  # the check images: count, source, margin, decisive

    @property
    def picked(self) -> dict[str, Any] | None:
        """The chosen row, or None when no candidate met the bound."""
        return None if self.choice is None else self.rows[self.choice]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``--json`` writes."""
        return {"metric": self.metric, "reference": self.reference, "max_drop_pp": self.max_drop,
                "check": self.check, "pick": self.picked, "message": self.message, "pareto_front": self.front,
                "rows": self.rows, "machine": self.machine}


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
        raise EdgeclfError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) to judge the files on")
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
    for key in ("accuracy", "top5_accuracy", "data_images"):
        if key in probe:
            row[key] = probe[key]
    if note:
        row["note"] = note
    return row


def _key(row: dict[str, Any]) -> Key:
    return row["model"], row["backend"], row["device"]


def _reference(rows: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The float file's row (its default backend, first device) or, with accuracy and no float file, the best row."""
    ok = [r for r in rows if r["status"] == "passed"]
    ref = next((r for r in ok if r["quant"] in FLOAT_QUANTS), None)
    if ref is None and metric == "accuracy" and ok:
        ref = max(ok, key=lambda r: r["accuracy"])
        return {"model": ref["model"], "backend": ref["backend"], "device": ref["device"], "accuracy": ref["accuracy"],
                "note": "no float file among the candidates: the most accurate file is the reference"}
    if ref is None:
        raise EdgeclfError("no float file loaded to judge the other files against: give the float file too, or "
                           "--data (class folders) to judge accuracy")
    out = {"model": ref["model"], "backend": ref["backend"], "device": ref["device"]}
    if metric == "accuracy":
        out["accuracy"] = ref["accuracy"]
    return out


def limits_for(max_drop: float) -> Limits:
    """The gate's limits for a bound of ``max_drop`` pp: the flip rate among decisive images and the accuracy drop."""
    return Limits(DEFAULT_MARGIN, max_drop / 100, max_drop / 100)


def evidence(p: Parity) -> str:
    """What a row's verdict rests on, in one phrase: the counts and their 95 % upper bound."""
    flips = (f"{p.flips} of {p.decisive} decisive images flip, 95 % bound {100 * p.flip_bounds[1]:.2f} %"
             if p.decisive else f"none of the {p.images} check images is decisive (the reference's top-1 leading "
                                f"its runner-up by {p.margin:g})")
    if p.labelled:
        return (f"accuracy {p.source_accuracy:.4f} -> {p.file_accuracy:.4f} on {p.labelled} labelled images, drop "
                f"{100 * p.accuracy_drop:.2f} pp, 95 % bound {100 * p.drop_bounds[1]:.2f} pp; {flips}")
    if not p.decisive and p.passed and p.reason:
        return p.reason  # numerically equivalent to the reference
    return flips


def quality_figures(p: Parity) -> dict[str, Any]:
    """A row's quality from the gate's verdict: its figures, ``drop_pp`` (None: nothing to judge on) and
    ``bound_pp`` (the 95 % upper bound of what ``drop_pp`` estimates)."""
    out: dict[str, Any] = {"gate": p.status, "decisive": p.decisive, "flips": p.flips,
                           "flip_bounds": list(p.flip_bounds), "agreement": p.agreement,
                           "top5_overlap": p.top5_overlap, "mean_kl": p.mean_kl}
    if p.accuracy_drop is not None:
        out.update(labelled=p.labelled, accuracy_drop=p.accuracy_drop, drop_bounds=list(p.drop_bounds),
                   drop_pp=round(100 * p.accuracy_drop, 4), bound_pp=round(100 * p.drop_bounds[1], 4))
    elif p.decisive:
        out.update(drop_pp=round(100 * p.flips / p.decisive, 4), bound_pp=round(100 * p.flip_bounds[1], 4))
    else:  # no decisive image: only a file numerically equivalent to the reference can be judged
        out.update(drop_pp=0.0 if p.passed else None, bound_pp=None)
    out["evidence"] = evidence(p)
    if p.passed:
        out["passed_on"] = p.reason  # the gate's own sentence: accuracy, decisive flips or numerical equivalence
    return out


def score(rows: list[dict[str, Any]], probabilities: Mapping[Key, np.ndarray], reference: Key, max_drop: float,
          image_source: str, truth: np.ndarray | None = None) -> None:
    """Judge each loaded row's probabilities against the reference's by the gate's rules at ``max_drop`` pp
    (once per file, backend and device: its thread rows share the answers) and record the figures in the row."""
    limits, ref = limits_for(max_drop), probabilities[reference]
    judged: dict[Key, dict[str, Any]] = {}
    for r in rows:
        if r["status"] == "passed":
            k = _key(r)
            if k not in judged:
                judged[k] = quality_figures(judge(ref, probabilities[k], limits, image_source, truth, r["device"]))
            r.update(judged[k])


def pareto_front(rows: list[dict[str, Any]]) -> list[int]:
    """Indices of the timed, judged rows no other row beats on both latency and drop (lower is better), fastest
    first."""
    timed = sorted((r["latency_ms"]["median"], r["drop_pp"], i) for i, r in enumerate(rows)
                   if r["status"] == "passed" and r.get("latency_ms") and r.get("drop_pp") is not None)
    front: list[int] = []
    best = None
    for _, drop, i in timed:
        if best is None or drop < best:
            front.append(i)
            best = drop
    return front


def within(row: dict[str, Any], max_drop: float) -> bool:
    """A judged row meets the bound: its point estimate is at most ``max_drop`` pp and the gate did not fail it."""
    return row.get("drop_pp") is not None and row["drop_pp"] <= max_drop + 1e-9 and row["gate"] != "failed"


def _confidence(r: dict[str, Any], max_drop: float) -> str:
    """Whether the 95 % bound confirms a picked row within ``max_drop``; if not, what the gate passed it on, or
    (unverified) how many more images would settle it."""
    bound, limit = r.get("bound_pp"), max_drop / 100
    if bound is None:  # no decisive image and no labels: picked only as numerically equivalent, as its evidence says
        return ""
    if bound <= max_drop + 1e-9:
        return f", within the {max_drop:g} pp bound at 95 % confidence"
    if r["gate"] == "passed":
        return (f"; its 95 % bound {bound:g} pp exceeds the {max_drop:g} pp bound, but the gate passes it: "
                f"{r['passed_on']}")
    if limit <= 0:
        settle = "no number of images can bound a drop to 0"
    elif "accuracy_drop" in r:
        lost = max(0, round(r["accuracy_drop"] * r["labelled"]))
        settle = (f"about {max(1, needed(limit, events=lost) - r['labelled'])} more labelled images with no further "
                  "loss would settle it")
    else:
        settle = f"{needed(limit, events=r['flips']) - r['decisive']} more decisive images with no flip would settle it"
    return f"; unverified: its 95 % bound {bound:g} pp exceeds the {max_drop:g} pp bound ({settle})"


def choose(rows: list[dict[str, Any]], max_drop: float) -> tuple[int | None, str]:
    """The fastest timed row within ``max_drop`` pp (rows judged by ``score`` at that bound) and a one-line verdict
    stating its evidence; None (and why) when no row is within."""
    timed = [(r["latency_ms"]["median"], i) for i, r in enumerate(rows)
             if r["status"] == "passed" and r.get("latency_ms")]
    if not timed:
        return None, "no candidate could be timed"
    ok = [(ms, i) for ms, i in timed if within(rows[i], max_drop)]
    if not ok:
        judged = [rows[i] for _, i in timed if rows[i].get("drop_pp") is not None]
        if not judged:
            return None, (f"no candidate could be judged ({rows[timed[0][1]]['evidence']}): give real images "
                          "(--samples) or class folders (--data); nothing picked")
        best = min(judged, key=lambda r: (r["gate"] == "failed", r["drop_pp"]))
        return None, (f"no candidate is within {max_drop:g} pp of the reference (the closest, "
                      f"{Path(best['model']).name} on {best['backend']}, drops {best['drop_pp']:g} pp, gate "
                      f"{best['gate']}: {best['evidence']}): nothing picked")
    ms, i = min(ok)
    r = rows[i]
    threads = "default threads" if r["threads"] is None else f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
    message = (f"picked {Path(r['model']).name} on {r['backend']} ({r['device']}, {threads}): {ms:.3f} ms median, "
               f"drop {r['drop_pp']:g} pp from the reference ({r['evidence']})" + _confidence(r, max_drop))
    unjudged = [rows[j] for t, j in timed if t < ms and rows[j].get("drop_pp") is None]
    if unjudged:
        message += f"; {len(unjudged)} faster candidate(s) could not be judged ({unjudged[0]['evidence']})"
    return i, message


def pick(models: Sequence[str | os.PathLike], device: str | Sequence[str] = DEVICES,
         threads: int | Sequence[int] | None = None, max_drop: float = 1.0, data: str | os.PathLike | None = None,
         samples: str | os.PathLike | None = None, runs: int = 200, warmup: int = 20, max_secs: float = 120.0,
         labels: str | os.PathLike | Sequence[str] | None = None, mean: float | Sequence[float] | None = None,
         std: float | Sequence[float] | None = None, color: str | None = None, resize: str | None = None,
         crop_ratio: float | None = None, input_size: tuple[int, int] | int | None = None, output: str | None = None,
         quant: str | Sequence[str] = RUN_FOLDER_QUANTS, convert_dir: str | os.PathLike | None = None,
         deploy: str | os.PathLike | None = None, progress: bool = True) -> PickResult:
    """Measure every candidate (file x backend x device x threads) and pick the fastest within ``max_drop`` pp.

    ``data``: class folders (the accuracy drop, and flips among decisive images); else ``samples`` (a folder of
    images) or seeded synthetic frames (flips among decisive images), judged against the float file by the
    convert gate's rules. ``runs`` timed calls per candidate in blocks of 10 (fewer when ``max_secs`` runs
    out). ``deploy``: where to write the deploy.json of the pick (default: next to the picked file; nothing
    is written when nothing is picked).
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
    metric = "accuracy" if data is not None else "flips"
    n_images = len(base["data"]["labels"]) if base["data"] else len(base["samples"] or []) or SYNTHETIC_IMAGES
    source = (f"labelled images in {data}" if data is not None else f"images in {samples}" if samples is not None
              else "synthetic frames (seeded blurred noise)")
    with console.status("preparing") as status, tempfile.TemporaryDirectory(prefix="edgeclf-pick-") as tmp:
        files, rows = _files(list(map(str, models)), devices, quant, convert_dir and str(convert_dir), runtime,
                             status.update)
        candidates, probes = [], {}
        for path, note in files:
            fmt = format_of(path)
            for backend in backends_for(fmt.container):
                for dev in (d for d in devices if d in fmt.devices):
                    status.update(f"checking {Path(path).name} on {backend} ({dev})")
                    saved = str(Path(tmp) / f"{len(probes)}.npy")
                    probe = run_worker({**base, "kind": "quality", "model": path, "backend": backend, "device": dev,
                                        "probabilities": saved}, 120 + 2.0 * n_images, PICK_WORKER)
                    if probe["status"] != "passed":
                        rows.append(_row(path, backend, dev, None, probe, note))
                        continue
                    probes[(path, backend, dev)] = {"probabilities": np.load(saved), "truth": probe.get("truth")}
                    for t in (counts if dev == "cpu" else [None]):
                        rows.append(_row(path, backend, dev, t, probe, note))
                        candidates.append(len(rows) - 1)
        ref = _reference(rows, metric)
        ref_key = _key(ref)
        truth = probes[ref_key]["truth"]
        score(rows, {k: v["probabilities"] for k, v in probes.items()}, ref_key, max_drop, source,
              None if truth is None else np.asarray(truth))
        check = {"images": n_images, "source": source, "margin": DEFAULT_MARGIN,
                 "decisive": next(r["decisive"] for r in rows if r["status"] == "passed" and _key(r) == ref_key)}
        status.update(f"timing {len(candidates)} candidates side by side")
        job = {**base, "kind": "latency", "data": None, "samples": None, "rounds": -(-runs // PER_ROUND),
               "per_round": PER_ROUND, "warmup": warmup, "max_secs": max_secs,
               "candidates": [{k: rows[i][k] for k in ("model", "backend", "device", "threads")} for i in candidates]}
        timed = run_worker(job, 300 + 3 * max_secs, PICK_WORKER) if candidates else {"status": "passed", "results": []}
    for j, i in enumerate(candidates):
        rows[i].update(timed["results"][j] if timed["status"] == "passed" else {"status": timed["status"]})
    result = PickResult(rows, metric, ref, max_drop, pareto_front(rows), machine=machine_info(), check=check)
    result.choice, result.message = choose(rows, max_drop)
    if data is None and samples is None:
        result.message += (f"; the check images are {n_images} synthetic frames: give real ones (--samples) or class "
                           "folders (--data) for a verdict that holds on real images")
    if result.picked is not None:
        r = result.picked
        target = Path(deploy) if deploy else Path(r["model"]).parent / "deploy.json"
        measured = ("latency_ms", "runs", "accuracy", "drop_pp", "bound_pp", "gate", "evidence", "engine", "quant")
        provenance = {"measured": {k: r[k] for k in measured if k in r}, "reference": ref, "check": check,
                      "max_drop_pp": max_drop, "machine": result.machine}
        write_deploy(target, r["model"], r["backend"], r["device"], r["threads"], runtime, provenance)
        result.message += f"; wrote {target}"
    return result
