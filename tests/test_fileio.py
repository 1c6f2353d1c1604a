"""Atomic writes: no symlink followed, a killed writer leaves the old file and its leftover is cleaned, folders
are replaced whole."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from edgeclf import fileio
from edgeclf.fileio import STALE_AFTER, atomic_path, atomic_write_bytes


def test_a_symlink_planted_at_the_temporary_name_is_not_followed(tmp_path, monkeypatch):
    victim_file, victim_dir = tmp_path / "victim.txt", tmp_path / "victim"
    victim_file.write_text("keep")
    victim_dir.mkdir()
    target = tmp_path / "out" / "model.bin"
    target.parent.mkdir()
    monkeypatch.setattr(tempfile, "_get_candidate_names", lambda: iter(["a", "b", "c"]))
    (target.parent / ".model.bin.a.part").symlink_to(victim_file)
    (target.parent / ".model.bin.b.part").symlink_to(victim_dir)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert victim_file.read_text() == "keep" and os.listdir(victim_dir) == []


WRITER = """
import sys, time
from edgeclf.fileio import atomic_path
with atomic_path(sys.argv[1]) as tmp, open(tmp, "wb") as fh:
    fh.write(b"half")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)
"""


def test_a_killed_writer_leaves_the_old_file_and_the_next_write_cleans_up(tmp_path):
    target = tmp_path / "report.json"
    target.write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"writing\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == b"old"
    (leftover,) = [p for p in tmp_path.iterdir() if p != target]
    atomic_write_bytes(target, b"new")  # a fresh leftover may be another writer at work: kept
    assert leftover.exists()
    stale = time.time() - STALE_AFTER - 1
    for p in (leftover, *leftover.iterdir()):
        os.utime(p, (stale, stale))
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer" and os.listdir(tmp_path) == ["report.json"]


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "rename-aside"])
def test_a_folder_is_replaced_whole(tmp_path, monkeypatch, exchange):
    """A reader holding the folder sees all old or all new files, never a mix (checked while it stays current)."""
    if not exchange:
        monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    target = tmp_path / "saved"
    versions = {str(v): {f"f{i}" for i in range(3 + v)} for v in range(2)}

    def write(v: int) -> None:
        with atomic_path(target) as tmp:
            tmp.mkdir()
            for name in versions[str(v % 2)]:
                (tmp / name).write_text(str(v % 2))

    write(0)
    seen, done = [], threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
            except FileNotFoundError:
                seen.append("missing")
                continue
            try:
                names = set(os.listdir(fd))
                contents = {open(n, opener=lambda p, f: os.open(p, f, dir_fd=fd)).read() for n in names}
                current = os.stat(target).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                continue  # swapped out and being deleted while read
            finally:
                os.close(fd)
            version = contents.pop() if len(contents) == 1 else None
            if current:
                seen.append(version if versions.get(version) == names else f"mixed {names} {contents}")

    reader = threading.Thread(target=read)
    reader.start()
    for v in range(1, 60):
        write(v)
    done.set()
    reader.join()
    assert seen and not [s for s in seen if s.startswith("mixed")]
