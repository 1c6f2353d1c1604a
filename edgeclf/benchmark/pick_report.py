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
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    what = "accuracy" if result.metric == "accuracy" else "flips among decisive images"
    table = Table(title=f"edgeclf bench --pick - {describe(result.machine)}, bound {result.max_drop:g} pp of {what}",
                  box=box.SIMPLE_HEAD, show_edge=False, collapse_padding=True, pad_edge=False)
    middle = ("accuracy",) if result.metric == "accuracy" else ()
    width = min(16, max((len(Path(r["model"]).name) for r in result.rows), default=5))
    for c in ("", "model", "backend", "device", "threads", "status", "median ms", *middle, "drop pp", "bound pp",
              "gate"):
        table.add_column(c, justify="right" if c.endswith(("ms", "pp", "threads")) or c == "accuracy"
                         else "left", overflow="fold", no_wrap=c not in ("model", "backend"),
                         min_width=width if c == "model" else None)
    notes: list[str] = []
    for i, r in enumerate(result.rows):
        if r["status"] != "passed":
            notes.append(f"[{len(notes) + 1}] {r['model']} ({r['backend']}, {r['device']}): {r['status']}")
        lat = r.get("latency_ms") or {}
        mark = ">" if i == result.choice else "*" if i in result.front else ""
        accuracy = (fmt_cell(r.get("accuracy"), ".4f"),) if middle else ()
        table.add_row(mark, Path(r["model"]).name, r["backend"] or "-", r["device"] or "-", fmt_cell(r["threads"], "d"),
                      status_cell(r["status"], len(notes) if r["status"] != "passed" else None),
                      fmt_cell(lat.get("median"), ".3f"), *accuracy, fmt_cell(r.get("drop_pp"), ".2f"),
                      fmt_cell(r.get("bound_pp"), ".2f"), _gate_cell(r.get("gate")))
    console = console or table_console(stderr)
    console.print(table)
    check = result.check
    console.print(f"* Pareto front (no other row is both faster and lower in drop), > the pick; bound pp: one-sided "
                  f"95 %; {check.get('decisive', '?')} of {check.get('images', '?')} check images are decisive (the "
                  f"reference's top-1 leads by {check.get('margin', '?')} or more)", soft_wrap=True)
    for note in notes:
        console.print(escape(note), soft_wrap=True)
    console.print(escape(result.message), soft_wrap=True)


def _gate_cell(gate: str | None) -> str:
    """The gate's verdict, coloured: passed green, unverified yellow, failed red."""
    if gate is None:
        return "-"
    colour = {"passed": "green", "unverified": "yellow"}.get(gate, "red")
    return f"[{colour}]{gate}[/{colour}]"


def write_pick_plot(result: PickResult, target: str | os.PathLike) -> Path:
    """Median latency (x) against the drop from the reference (its 95 % upper bound as a bar), the Pareto front
    joined by a line, the bound dashed, the pick circled."""
    require_matplotlib()
    fig = figure((8, 5))
    ax = fig.subplots()
    timed = [(i, r) for i, r in enumerate(result.rows) if r.get("latency_ms") and r.get("drop_pp") is not None]
    for i, r in timed:
        x, y = r["latency_ms"]["median"], r["drop_pp"]
        colour = "C0" if i in result.front else "C7"
        ax.errorbar(x, y, yerr=[[0], [max(0.0, (r.get("bound_pp") or y) - y)]], fmt="o", ms=5, color=colour, lw=0.8,
                    capsize=2)
        ax.annotate(f"{Path(r['model']).name} {r['backend']} {r['device']} t{r['threads'] or '-'}", (x, y),
                    fontsize=6, xytext=(3, 3), textcoords="offset points")
    front = [result.rows[i] for i in result.front]
    ax.plot([r["latency_ms"]["median"] for r in front], [r["drop_pp"] for r in front], "-", color="C0", lw=1)
    ax.axhline(result.max_drop, ls="--", color="C3", lw=0.8, label=f"bound {result.max_drop:g} pp")
    if result.picked is not None:
        ax.scatter(result.picked["latency_ms"]["median"], result.picked["drop_pp"], s=160, facecolors="none",
                   edgecolors="C3", linewidths=2, label="pick")
    ax.legend(fontsize=8)
    ax.set_xlabel("latency, median (ms, batch 1)")
    ax.set_ylabel("accuracy drop from the reference (pp)" if result.metric == "accuracy"
                  else "decisive images whose top-1 flips (%)")
    ax.set_title(f"edgeclf bench --pick - {describe(result.machine)}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_png(fig, target, dpi=120, bbox_inches="tight")
    return Path(target)
