"""``bench --pick`` out: the candidates table with the Pareto front marked, the verdict line, JSON and a PNG."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeclf.benchmark.machine import describe
from edgeclf.benchmark.pick import PickResult
from edgeclf.benchmark.report import fmt_cell, require_matplotlib, status_cell, table_console
from edgeclf.plots import figure, save_png


def print_pick(result: PickResult, console: Any = None, stderr: bool = False) -> None:
    """One row per candidate (front marked *, pick marked >), the reasons behind non-passes, then the verdict."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"edgeclf bench --pick - {describe(result.machine)}, bound {result.max_drop:g} pp "
                        f"of {result.metric}")
    for c in ("", "model", "backend", "device", "threads", "status", "median ms", "p90 ms", result.metric, "drop pp"):
        table.add_column(c, justify="right" if c.endswith(("ms", "pp", "threads")) or c == result.metric else "left")
    notes: list[str] = []
    for i, r in enumerate(result.rows):
        if r["status"] != "passed":
            notes.append(f"[{len(notes) + 1}] {r['model']} ({r['backend']}, {r['device']}): {r['status']}")
        lat = r.get("latency_ms") or {}
        mark = ">" if i == result.choice else "*" if i in result.front else ""
        table.add_row(mark, Path(r["model"]).name, r["backend"] or "-", r["device"] or "-", fmt_cell(r["threads"], "d"),
                      status_cell(r["status"], len(notes) if r["status"] != "passed" else None),
                      fmt_cell(lat.get("median"), ".3f"), fmt_cell(lat.get("p90"), ".3f"), fmt_cell(r.get(result.metric), ".4f"),
                      fmt_cell(r.get("drop_pp"), ".2f"))
    console = console or table_console(stderr)
    console.print(table)
    console.print("* Pareto front (no other row is both faster and better), > the pick")
    for note in notes:
        console.print(escape(note), soft_wrap=True)
    console.print(escape(result.message), soft_wrap=True)


def write_pick_plot(result: PickResult, target: str | os.PathLike) -> Path:
    """Median latency (x) against quality, the Pareto front joined by a line, the pick circled."""
    require_matplotlib()
    fig = figure((8, 5))
    ax = fig.subplots()
    timed = [(i, r) for i, r in enumerate(result.rows) if r.get("latency_ms") and r.get(result.metric) is not None]
    for i, r in timed:
        x, y = r["latency_ms"]["median"], r[result.metric]
        ax.scatter(x, y, s=30, color="C0" if i in result.front else "C7")
        ax.annotate(f"{Path(r['model']).name} {r['backend']} {r['device']} t{r['threads'] or '-'}", (x, y),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = [result.rows[i] for i in result.front]
    ax.plot([r["latency_ms"]["median"] for r in front], [r[result.metric] for r in front], "-", color="C0", lw=1)
    if result.picked is not None:
        ax.scatter(result.picked["latency_ms"]["median"], result.picked[result.metric], s=160, facecolors="none",
                   edgecolors="C3", linewidths=2, label="pick")
        ax.legend(fontsize=8)
    ax.set_xlabel("latency, median (ms, batch 1)")
    ax.set_ylabel(f"top-1 {result.metric}" + (" with the float file" if result.metric == "agreement" else ""))
    ax.set_title(f"edgeclf bench --pick - {describe(result.machine)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, target, dpi=120, bbox_inches="tight")
    return Path(target)
