"""Benchmark records out: a terminal table (rich), JSON, flattened CSV, and a latency-vs-accuracy PNG.

Every file is written atomically (``edgeclf.fileio``); matplotlib is imported only by ``write_plot``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Sequence

from edgeclf.errors import EdgeclfError
from edgeclf.fileio import atomic_write_text
from edgeclf.plots import figure, save_png
from edgeclf.benchmark.machine import describe


def fmt_cell(value: Any, spec: str = ".2f") -> str:
    """A table cell: the value formatted, or "-" when not measured."""
    return "-" if value is None else format(value, spec)


def status_cell(status: str, note: int | None) -> str:
    """The status word, coloured, with the number of the note that says why."""
    kind = status.split(":")[0]
    colour = "green" if kind == "passed" else "yellow" if kind in ("unavailable", "skipped") else "red"
    return f"[{colour}]{kind}[/{colour}]" + (f" [{note}]" if note else "")


def print_table(records: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]] | None = None,
                console: Any = None) -> None:
    """One row per file and device (ultralytics-style status column), then the reasons behind each non-pass."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if not records:
        return
    has_data = any("accuracy" in r for r in records)
    batches = sorted({t["batch"] for r in records for t in (r.get("throughput") or []) if t["batch"] > 1})
    threads = records[0]["threads"] or "default"
    table = Table(title=f"edgeclf bench - {describe(records[0]['machine'])}, threads {threads}")
    cols = ["model", "format", "quant", "device", "status", "size MB", "init ms", "first ms", "p50 ms", "p99 ms",
            "FPS", *[f"img/s @{b}" for b in batches], "peak RSS MB"]
    cols += ["top-1", "top-5", "agree"] if has_data else []
    cols += ["vs ref"] if comparisons else []
    cols += ["backend"]
    for c in cols:
        table.add_column(c, justify="left" if c in ("model", "format", "quant", "device", "status", "backend") else "right",
                         no_wrap=c == "model")
    notes: list[str] = []
    for i, r in enumerate(records):
        lat = r.get("latency_ms") or {}
        thr = {t["batch"]: t.get("images_per_s") for t in (r.get("throughput") or [])}
        if r["status"] != "passed":
            notes.append(f"[{len(notes) + 1}] {r['model']} ({r['format']}, {r['device']}): {r['status']}")
        row = [Path(r["model"]).name, r["format"], r.get("quant") or "-", r["device"],
               status_cell(r["status"], len(notes) if r["status"] != "passed" else None),
               fmt_cell(r["size_bytes"] and r["size_bytes"] / 1e6, ".3f"), fmt_cell(r.get("init_ms"), ".1f"),
               fmt_cell(r.get("first_ms"), ".2f"), fmt_cell(lat.get("p50"), ".3f"), fmt_cell(lat.get("p99"), ".3f"),
               fmt_cell(r.get("fps"), ".1f"), *[fmt_cell(thr.get(b), ".1f") for b in batches], fmt_cell(r.get("peak_rss_mb"), ".1f")]
        if has_data:
            row += [fmt_cell(r.get("accuracy"), ".4f"), fmt_cell(r.get("top5_accuracy"), ".4f"), fmt_cell(r.get("agreement"), ".4f")]
        if comparisons:
            c = comparisons[i]
            row.append("-" if c["ratio"] is None else
                       (f"[red]{c['ratio']:.2f}x[/red]" if c["verdict"] == "slower" else f"{c['ratio']:.2f}x"))
        row.append(r.get("backend") or "-")
        table.add_row(*row)
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log or a pasted report: do not squeeze the table into 80 columns
            console = Console(width=max(console.width, 180))
    console.print(table)
    for note in notes:
        console.print(escape(note), soft_wrap=True)


def write_json(records: Sequence[dict[str, Any]], target: str | os.PathLike) -> Path:
    """The records as a JSON list (the format ``--compare`` reads back)."""
    return atomic_write_text(target, json.dumps(list(records), indent=2) + "\n")


NESTED = ("latency_ms", "throughput", "input", "machine")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """Nested objects as dotted columns (``latency_ms.p50``, ``machine.cpu``); throughput per batch size."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        if value is None and key in NESTED:
            continue
        if key == "throughput":
            for t in value or []:
                flat[f"throughput.b{t['batch']}_images_per_s"] = t.get("images_per_s")
        elif isinstance(value, dict):
            for sub, v in flatten(value).items():
                flat[f"{key}.{sub}"] = v
        elif isinstance(value, list):
            flat[key] = "x".join(map(str, value))
        else:
            flat[key] = value
    return flat


def write_csv(records: Sequence[dict[str, Any]], target: str | os.PathLike) -> Path:
    """The records flattened, one row each; columns are the union, in first-seen order."""
    rows = [flatten(r) for r in records]
    fields = list(dict.fromkeys(k for row in rows for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return atomic_write_text(target, buf.getvalue())


def require_matplotlib() -> None:
    """Fail early, before measuring, when ``--plot`` cannot be drawn."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise EdgeclfError("--plot needs matplotlib, which is not installed: pip install matplotlib "
                           "(it comes with pip install 'edgeclf[train]')") from None


def write_plot(records: Sequence[dict[str, Any]], target: str | os.PathLike) -> Path:
    """p50 latency (x) against top-1 accuracy, or file size when there is no accuracy, one labelled point per row."""
    require_matplotlib()
    rows = [r for r in records if (r.get("latency_ms") or {}).get("p50") is not None]
    use_acc = any(r.get("accuracy") is not None for r in rows)
    fig = figure((8, 5))
    ax = fig.subplots()
    for i, r in enumerate(rows):
        y = r.get("accuracy") if use_acc else (r["size_bytes"] or 0) / 1e6
        if y is None:
            continue
        ax.scatter(r["latency_ms"]["p50"], y, s=40, color=f"C{i % 10}")
        ax.annotate(f"{Path(r['model']).name} ({r['device']})", (r["latency_ms"]["p50"], y), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("latency p50 (ms, batch 1)")
    ax.set_ylabel("top-1 accuracy" if use_acc else "file size (MB)")
    ax.set_title(f"edgeclf bench - {describe(records[0]['machine'])}" if records else "edgeclf bench", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, target, dpi=120, bbox_inches="tight")  # keeps point labels past the axes
    return Path(target)
