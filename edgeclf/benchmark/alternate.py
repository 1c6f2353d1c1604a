"""Latency of several loops side by side: short blocks that take turns, the first call of each block dropped.

Machine noise then hits every loop alike, and each is timed in its own steady state as in a real loop (the
first call of a block pays for the caches the previous loop left behind). The order rotates every round, so
no loop always follows the same neighbour.
"""
from __future__ import annotations

import gc
import time
from typing import Any, Callable

import numpy as np


def alternate(loops: dict[str, Callable[[], Any]], rounds: int, per_round: int, warmup: int = 0,
              max_secs: float | None = None) -> dict[str, list[float]]:
    """Milliseconds per kept call of each loop; stops early (after at least 3 rounds) when ``max_secs`` runs out."""
    for fn in loops.values():
        for _ in range(warmup):
            fn()
    names = list(loops)
    times: dict[str, list[float]] = {k: [] for k in names}
    deadline = time.perf_counter() + max_secs if max_secs else None
    gc_was_on = gc.isenabled()
    gc.disable()  # as timeit does: a collection must not land inside one call
    try:
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn, kept = loops[name], times[name]
                for i in range(per_round + 1):
                    t0 = time.perf_counter_ns()
                    fn()
                    if i:
                        kept.append((time.perf_counter_ns() - t0) / 1e6)
            if deadline is not None and r >= 2 and time.perf_counter() > deadline:
                break
    finally:
        if gc_was_on:
            gc.enable()
    return times


def summary(ms: list[float]) -> dict[str, float]:
    """Median and p90 (ms) of one loop's kept calls."""
    return {"median": round(float(np.median(ms)), 4), "p90": round(float(np.percentile(ms, 90)), 4)}
