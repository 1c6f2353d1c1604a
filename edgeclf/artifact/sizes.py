"""What a file costs to ship: its bytes under the coders over-the-air update systems use.

gzip (stdlib, always), and zstd and brotli when their packages are installed (the ``[train]`` extra brings them;
an on-device install measures gzip only). gzip -9 and zstd -19 are their highest standard levels; brotli runs at
quality 9 (seconds for a 4 MB file) unless ``thorough``: quality 11, what an update server compressing once for
a whole fleet would use, is about ten times slower and some 15 % smaller on int8 models.
"""
from __future__ import annotations

import gzip
from typing import Callable


def _zstd(data: bytes) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=19).compress(data)


def _brotli(data: bytes, thorough: bool) -> bytes:
    import brotli

    return brotli.compress(data, quality=11 if thorough else 9)


CODERS: dict[str, Callable[[bytes, bool], bytes]] = {
    "gzip": lambda data, thorough: gzip.compress(data, compresslevel=9, mtime=0),
    "zstd": lambda data, thorough: _zstd(data),
    "brotli": _brotli,
}


def compressed_sizes(data: bytes, thorough: bool = False) -> dict[str, int]:
    """Bytes after each installed coder, by name (``gzip``, ``zstd``, ``brotli``); a missing package is left out."""
    sizes = {}
    for name, code in CODERS.items():
        try:
            sizes[name] = len(code(data, thorough))
        except ImportError:
            continue
    return sizes
