"""Atomic, durable file and folder writing: write in a private folder beside the target, fsync, rename over it.

An interrupted write (crash, kill, Ctrl-C, full disk) never leaves a half file or folder under the final name,
and a finished one survives a power cut (the file, then the folder holding its name, are fsynced). The private
folder is made with ``mkdtemp`` (mode 0700, refused if the name exists), so a symlink planted at a predictable
temporary name is never followed. A killed writer's leftover (``.<name>.<random>.part``) is removed by the next
write to the same target once it is ``STALE_AFTER`` seconds old; readers never see it under the target's name.
"""
from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

STALE_AFTER = 3600.0  # seconds without a change before another writer's leftover counts as abandoned
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _fsync(path: Path) -> None:
    """Flush a file, or a folder's entries, to disk (not supported everywhere: then a no-op)."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    """fsync a written file, or every file and folder of a written folder."""
    if path.is_dir() and not path.is_symlink():
        for root, _, files in os.walk(path):
            for name in files:
                _fsync(Path(root, name))
            _fsync(Path(root))
    else:
        _fsync(path)


@functools.lru_cache(maxsize=1)
def _renameat2() -> Any:
    """glibc's ``renameat2`` (Linux), or None where the C library lacks it."""
    try:
        return getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    except OSError:
        return None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    renameat2 = _renameat2()
    return renameat2 is not None and renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b),
                                               _RENAME_EXCHANGE) == 0


def _replace_folder(new: Path, target: Path, scratch: Path) -> None:
    """Put folder ``new`` at ``target``, an existing folder, so that readers see all old or all new files; the
    old folder ends up in ``scratch``.

    Swapped in one step where the kernel can; elsewhere the old folder is renamed aside first, so for the
    moment between the two renames ``target`` is missing (but never mixed).
    """
    if _exchange(new, target):
        return
    old = scratch / ".old"
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise


def _age(path: Path) -> float:
    """Seconds since ``path`` or anything directly in it last changed (a long writer keeps touching its file)."""
    try:
        entries = [path, *path.iterdir()] if path.is_dir() and not path.is_symlink() else [path]
        return time.time() - max(p.lstat().st_mtime for p in entries)
    except OSError:
        return 0.0


def remove_stale(target: Path) -> None:
    """Delete leftovers of killed writers of ``target`` that have not changed for ``STALE_AFTER`` seconds."""
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.part*"):
        if _age(leftover) < STALE_AFTER:
            continue
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                leftover.unlink()


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a path (with the target's own name, so tools that dispatch on the suffix still work) inside a
    private folder beside ``target``; on success it is fsynced and renamed to ``target``, on error removed.

    Use it for writers that insist on a path (converters, ``model.save``); the path does not exist yet, and the
    writer may make a file or a folder there. A folder replaces a folder whole (see ``_replace_folder``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    tmp = scratch / target.name
    try:
        yield tmp
        _fsync_tree(tmp)
        if tmp.is_dir() and target.is_dir() and not target.is_symlink():
            _replace_folder(tmp, target, scratch)
        else:
            os.replace(tmp, target)
        _fsync(target.parent)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``target`` atomically and return the target path."""
    return atomic_write_bytes(target, text.encode("utf-8"))
