"""Benchmark records out: a terminal table (rich), JSON, flattened CSV, and a latency-vs-accuracy PNG.

Every file is written atomically (``edgeclf.fileio``); matplotlib is imported only by ``write_plot``.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

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


def table_console(stderr: bool = False, wide: bool = False) -> Any:
    """The terminal; for a log or a pasted report, 100 columns (180 for ``--wide``) rather than rich's 80."""
    from rich.console import Console

    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=180 if wide else 100)


TEXT_COLUMNS = ("model", "format", "quant", "device", "status", "backend")


def _columns(records: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]] | None,
             wide: bool) -> list[tuple[str, Callable[[int, dict[str, Any]], str]]]:
    """(header, cell of row i) for each column shown; ``wide`` adds the ones a 100-column terminal cannot hold."""
    has_data = any("accuracy" in r for r in records)
    batches = sorted({t["batch"] for r in records for t in (r.get("throughput") or []) if t["batch"] > 1})
    lat = lambda r, k: fmt_cell((r.get("latency_ms") or {}).get(k), ".3f")  # noqa: E731
    thr = lambda r, b: fmt_cell(next((t.get("images_per_s") for t in r.get("throughput") or [] if t["batch"] == b),
                                     None), ".1f")  # noqa: E731
    cols: list[tuple[str, Callable[[int, dict[str, Any]], str], bool]] = [
        ("model", lambda i, r: Path(r["model"]).name, True),
        ("format", lambda i, r: r["format"], wide),
        ("quant", lambda i, r: r.get("quant") or "-", True),
        ("device", lambda i, r: r["device"], True),
        ("status", lambda i, r: r["status"], True),  # replaced by the coloured cell with its note number
        ("MB", lambda i, r: fmt_cell(r["size_bytes"] and r["size_bytes"] / 1e6, ".3f"), True),
        ("gzip MB", lambda i, r: fmt_cell(r.get("gzip_bytes") and r["gzip_bytes"] / 1e6, ".3f"), True),
        ("zstd MB", lambda i, r: fmt_cell(r.get("zstd_bytes") and r["zstd_bytes"] / 1e6, ".3f"), wide),
        ("brotli MB", lambda i, r: fmt_cell(r.get("brotli_bytes") and r["brotli_bytes"] / 1e6, ".3f"), wide),
        ("init ms", lambda i, r: fmt_cell(r.get("init_ms"), ".1f"), wide),
        ("first ms", lambda i, r: fmt_cell(r.get("first_ms"), ".2f"), wide),
        ("p50 ms", lambda i, r: lat(r, "p50"), True),
        ("p99 ms", lambda i, r: lat(r, "p99"), wide),
        ("FPS", lambda i, r: fmt_cell(r.get("fps"), ".1f"), wide),  # 1000 / mean latency: p50 says it
        *[(f"img/s @{b}", lambda i, r, b=b: thr(r, b), wide) for b in batches],
        ("RSS MB", lambda i, r: fmt_cell(r.get("peak_rss_mb"), ".1f"), wide),
        ("top-1", lambda i, r: fmt_cell(r.get("accuracy"), ".4f"), has_data),
        ("top-5", lambda i, r: fmt_cell(r.get("top5_accuracy"), ".4f"), has_data and wide),
        ("agree", lambda i, r: fmt_cell(r.get("agreement"), ".4f"), has_data),
        ("vs ref", lambda i, r: _ratio_cell(comparisons[i]) if comparisons else "-", bool(comparisons)),
        ("backend", lambda i, r: r.get("backend") or "-", wide),
    ]
    return [(name, cell) for name, cell, shown in cols if shown]


def _ratio_cell(c: dict[str, Any]) -> str:
    if c["ratio"] is None:
        return "-"
    return f"[red]{c['ratio']:.2f}x[/red]" if c["verdict"] == "slower" else f"{c['ratio']:.2f}x"


def print_table(records: Sequence[dict[str, Any]], comparisons: Sequence[dict[str, Any]] | None = None,
                console: Any = None, wide: bool = False, stderr: bool = False) -> None:
    """One row per file and device (ultralytics-style status column), then the reasons behind each non-pass.

    The default columns fit a 100-column terminal, each file's backend on a line below the table; ``wide``
    adds the format, init and first-call times, p99, throughput per batch size, memory, top-5 and the backend."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    if not records:
        return
    threads = records[0]["threads"] or "default"
    table = Table(title=f"edgeclf bench - {describe(records[0]['machine'])}, threads {threads}",
                  box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    columns = _columns(records, comparisons, wide)
    for name, _ in columns:  # only the file name (kept whole up to 16 characters) and the backend may wrap
        table.add_column(name, justify="left" if name in TEXT_COLUMNS else "right", overflow="fold",
                         no_wrap=name not in ("model", "backend"),
                         min_width=min(16, max(len(Path(r["model"]).name) for r in records)) if name == "model" else None)
    notes: list[str] = []
    for i, r in enumerate(records):
        if r["status"] != "passed":
            notes.append(f"[{len(notes) + 1}] {r['model']} ({r['format']}, {r['device']}): {r['status']}")
        cells = [cell(i, r) for _, cell in columns]
        cells[[n for n, _ in columns].index("status")] = status_cell(r["status"], len(notes) if r["status"] != "passed" else None)
        table.add_row(*cells)
    console = console or table_console(stderr, wide)
    console.print(table)
    if not wide:
        backends: dict[str, list[str]] = {}
        for r in records:
            if r.get("backend"):
                backends.setdefault(r["backend"], []).append(Path(r["model"]).name)
        for backend, files in backends.items():
            console.print(escape(f"{backend}: {', '.join(dict.fromkeys(files))}"))
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
