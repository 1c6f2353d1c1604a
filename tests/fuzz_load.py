"""Load mutated copies of a model with edgeclf.Runtime, one per line of output; run in a subprocess by the tests.

Usage: python fuzz_load.py MODEL WORKDIR COUNT SEED. Prints ``FUZZ <i> start`` then ``FUZZ <i> ok``, or the error class.
Anything but an EdgeclfError (or a hard crash of the process) is a bug.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def _flip(data: bytes, lo: int, hi: int, most: int, rng: np.random.Generator) -> bytes:
    """XOR 1..most distinct bytes in [lo, hi) with non-zero values, so the copy always differs."""
    b = bytearray(data)
    for pos in rng.choice(np.arange(lo, hi), size=min(hi - lo, int(rng.integers(1, most + 1))), replace=False):
        b[pos] ^= int(rng.integers(1, 256))
    return bytes(b)


def mutants(data: bytes, count: int, seed: int):
    """Truncations, and byte flips anywhere, in the structural head, and in the tail."""
    rng = np.random.default_rng(seed)
    n = len(data)
    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield data[: int(rng.integers(0, n))]
        elif kind == 1:
            yield _flip(data, 0, n, 7, rng)
        elif kind == 2:
            yield _flip(data, 0, min(n, 4096), 3, rng)
        else:
            yield _flip(data, max(0, n - 4096), n, 3, rng)


def main() -> None:
    from edgeclf import EdgeclfError, Runtime
    model, work, count, seed = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    frame = np.zeros((40, 40, 3), np.uint8)
    for i, blob in enumerate(mutants(model.read_bytes(), count, seed)):
        path = work / f"mutant{model.suffix}"
        path.write_bytes(blob)
        print(f"FUZZ {i} start", flush=True)
        try:
            Runtime(path, input_size=(32, 32)).predict(frame)
            print(f"FUZZ {i} ok", flush=True)
        except EdgeclfError as exc:
            print(f"FUZZ {i} {type(exc).__name__}", flush=True)


if __name__ == "__main__":
    main()
