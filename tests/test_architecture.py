"""The layout is the architecture: layers import only downward (import-linter's contracts in setup.cfg), no
module imports itself through a loop (imports inside functions included), and the top level stays small."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_LEAVES = {"__init__.py", "__main__.py", "_version.py", "errors.py", "fileio.py", "metrics.py", "plots.py",
                 "report.py", "py.typed"}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph.get(v, ()):
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is part of the dev extra"
    run = subprocess.run([lint, "--config", str(ROOT / "setup.cfg"), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout


def test_no_import_cycles_counting_imports_inside_functions():
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("edgeclf", cache_dir=None)  # no .grimp_cache in the repository
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m) if i.startswith("edgeclf")}
             for m in graph.modules if m.startswith("edgeclf")}
    assert _cycles(edges) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_top_level_holds_only_subpackages_and_shared_leaves():
    top = ROOT / "edgeclf"
    loose = {p.name for p in top.iterdir() if p.is_file() and p.name not in SHARED_LEAVES}
    assert loose == set()
    packages = {p.name for p in top.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert packages == {"artifact", "runtime", "camera", "serve", "data", "models", "training", "evaluation",
                        "conversion", "benchmark", "demo", "cli"}
