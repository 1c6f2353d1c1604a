"""Atomic file writing: a temporary file beside the target, fsynced, then renamed over it.

An interrupted write (crash, Ctrl-C, full disk) therefore never leaves a half file under the final name.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success it is renamed to ``target``, on error removed.

    Use it for writers that insist on a path (converters, ``model.save``). ``suffix`` defaults to the
    target's own suffix so that tools that dispatch on it (Keras' ``.keras``/``.h5``) still work.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + (target.suffix if suffix is None else suffix),
                               dir=target.parent)
    os.close(fd)
    os.unlink(tmp)  # writers create it themselves; some refuse an existing file or need a directory
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.is_file():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        if target.is_dir() and tmp_path.is_dir():
            shutil.rmtree(target)
        os.replace(tmp_path, target)
    except BaseException:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()
        raise


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))
