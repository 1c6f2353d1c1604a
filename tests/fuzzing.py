"""Fuzz targets and their input strategies, shared by tests/test_fuzz.py (a few seconds) and benchmarks/fuzz.py (long).

A target is an input strategy plus a check that may raise only ``EdgeclfError``; anything else, a native crash,
a hang or unbounded memory is a bug. Run as a script (``python tests/fuzzing.py metadata|runtime MODEL EXAMPLES``) it
fuzzes one model-file target in this process and prints one line of outcome counts, so a caller can run code
that might crash natively (the interpreters) in a subprocess.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from edgeclf.errors import EdgeclfError

DEFAULT_EXAMPLES = int(os.environ.get("EDGECLF_FUZZ_EXAMPLES", "40"))
DECODE_MAX_PIXELS = 4_000_000  # the decoder's memory is bounded by this limit (16 bytes a pixel at most)


@dataclass
class Target:
    """What to feed (``strategy``) and what to run on it (``check``: returns an outcome name or raises)."""

    strategy: st.SearchStrategy[Any]
    check: Callable[[Any], str]


def mutants(data: bytes) -> st.SearchStrategy[bytes]:
    """Truncations, and 1-8 byte flips (each a different copy of ``data``) anywhere, in the structural head and in the tail, of ``data``."""
    n = len(data)

    def flipped(lo: int, hi: int) -> st.SearchStrategy[bytes]:
        flips = st.lists(st.tuples(st.integers(lo, hi - 1), st.integers(1, 255)), min_size=1, max_size=8,
                         unique_by=lambda flip: flip[0])  # distinct positions: the copy always differs

        def apply(pairs: list[tuple[int, int]]) -> bytes:
            b = bytearray(data)
            for pos, mask in pairs:
                b[pos] ^= mask
            return bytes(b)
        return flips.map(apply)

    return st.one_of(st.integers(0, n - 1).map(lambda k: data[:k]), flipped(0, n), flipped(0, min(n, 4096)),
                     flipped(max(0, n - 4096), n))


_NAMES = st.sampled_from(["Dense", "Lambda", "TFOpLambda", "function", "Functional", "QuantizeWrapperV2", "system",
                          "__lambda__", "keras.layers", "os", "tf_keras.src.engine.functional", "relu", "io.write_file",
                          "math.add", "name", "config", "layers", "module", "class_name"])
_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8) | _NAMES,
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_NAMES | st.text(max_size=4), inner,
                                                                                 max_size=4), max_leaves=12)


def _slots(node: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON tree, where a value could be replaced."""
    out, stack = [], [node]
    while stack:
        here = stack.pop()
        keys = range(len(here)) if isinstance(here, list) else here.keys() if isinstance(here, dict) else ()
        for key in keys:
            out.append((here, key))
            stack.append(here[key])
    return out


def config_mutants(config: Any) -> st.SearchStrategy[Any]:
    """``config`` with 1-4 of its values replaced by random JSON (biased to Keras names)."""
    text = json.dumps(config)

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        tree = json.loads(text)
        for _ in range(draw(st.integers(1, 4))):
            slots = _slots(tree)
            if not slots:
                break
            parent, key = slots[draw(st.integers(0, len(slots) - 1))]
            parent[key] = draw(_JSON)
        return tree
    return mutate()


def _as_file(suffix: str, check: Callable[[Path], Any]) -> Callable[[bytes], str]:
    """A check on bytes that runs ``check`` on them written to a temporary ``suffix`` file."""
    def run(data: bytes) -> str:
        with tempfile.TemporaryDirectory() as d:
            path = Path(d, "mutant" + suffix)
            path.write_bytes(data)
            try:
                check(path)
            except EdgeclfError as exc:
                return type(exc).__name__
        return "ok"
    return run


def _read_metadata(path: Path) -> None:
    from edgeclf.artifact import read_metadata
    read_metadata(path)


def _runtime(path: Path) -> None:
    import numpy as np

    from edgeclf.runtime import Runtime
    Runtime(path, input_size=(32, 32)).predict(np.zeros((40, 40, 3), np.uint8))


def _keras_config(config: Any) -> str:
    from edgeclf.training.keras_config import check_config
    try:
        check_config(config, "config.json")
    except EdgeclfError as exc:
        return type(exc).__name__
    return "ok"


def model_targets(model: Path) -> dict[str, Target]:
    """The targets for one model file: its metadata reader (pure Python) and a whole ``Runtime`` (native code)."""
    data = model.read_bytes()
    return {"metadata": Target(mutants(data), _as_file(model.suffix, _read_metadata)),
            "runtime": Target(mutants(data), _as_file(model.suffix, _runtime))}


def _decode(data: bytes) -> str:
    from edgeclf.runtime.images import decode_untrusted
    try:
        image, _ = decode_untrusted(data, DECODE_MAX_PIXELS)
    except EdgeclfError as exc:
        return type(exc).__name__
    assert image.dtype.name == "uint8" and image.ndim == 3 and image.shape[2] == 3
    return "ok"


def image_target(data: bytes) -> Target:
    """Untrusted image bytes (an upload) through the header checks and the decoder, in this process."""
    return Target(mutants(data), _decode)


def keras_config_target(config: Any) -> Target:
    """The Keras config inspector on mutations of a real model config."""
    return Target(config_mutants(config), _keras_config)


def fuzz(target: Target, examples: int = DEFAULT_EXAMPLES, observe: Callable[[Target, Any], str] | None = None) -> Counter:
    """Run ``target`` on ``examples`` generated inputs; the count of each outcome. An unexpected exception
    propagates (hypothesis reports the input) unless ``observe`` (which runs the check itself) absorbs it."""
    outcomes: Counter = Counter()

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(target.strategy)
    def run(value: Any) -> None:
        outcomes[observe(target, value) if observe else target.check(value)] += 1

    run()
    return outcomes


def main() -> None:
    name, model, examples = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(fuzz(model_targets(model)[name], examples)), flush=True)


if __name__ == "__main__":
    main()
