"""Untrusted images decoded in a small pool of worker processes, each bounded in memory and CPU time.

A decoder bug or bomb that gets past the header checks costs one worker, not the server: a worker that runs
out of CPU time, stops answering or dies is killed and replaced in the background, and the request that
caused it gets ``DecodeFailed``. Workers start in the background, so their start-up is not in a request.
"""
from __future__ import annotations

import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time

import numpy as np

from edgeclf.errors import ImageError
from edgeclf.runtime.decode_worker import FRAME, READY, SHAPE, SIZE
from edgeclf.runtime.image_headers import ImageHeader, ImageTooLarge, UnsupportedImage, check_header

BYTES_PER_PIXEL = 16          # output BGR + progressive JPEG coefficients / 16-bit PNG rows + EXIF rotation copy
MEMORY_HEADROOM = 128 * 2**20
START_TIMEOUT_S = 60.0
WORKER_ENV = {"OPENCV_IO_MAX_IMAGE_PIXELS": None, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
              "MALLOC_ARENA_MAX": "2"}
ERRORS = {b"T": ImageTooLarge, b"U": UnsupportedImage, b"E": ImageError}

log = logging.getLogger("edgeclf")


class DecodeFailed(ImageError):
    """The decoder ran out of time or died on this image (the worker was replaced)."""


class DecoderBusy(ImageError):
    """No decoder worker became free in time."""


class _Worker:
    """One ``decode_worker`` process and its pipes."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeclf.runtime.decode_worker", *args], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.out = self.proc.stdout.fileno()

    def read(self, n: int, deadline: float) -> bytearray:
        """Exactly ``n`` bytes of the reply, or ``DecodeFailed`` when the worker dies or the deadline passes."""
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([self.out], [], [], remaining)[0]:
                raise TimeoutError
            chunk = os.readv(self.out, [view[got:]])
            if chunk == 0:
                raise EOFError
            got += chunk
        return buf

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()


class DecodePool:
    """``workers`` decoder processes for images of at most ``max_pixels``, ``cpu_seconds`` of CPU each."""

    def __init__(self, max_pixels: int, workers: int = 2, cpu_seconds: float = 5.0,
                 memory_bytes: int | None = None) -> None:
        self.max_pixels, self.workers, self.cpu_seconds = max_pixels, workers, cpu_seconds
        self.memory_bytes = memory_bytes or max_pixels * BYTES_PER_PIXEL + MEMORY_HEADROOM
        self.wall_seconds = 3 * cpu_seconds + 2   # a worker blocked on something other than CPU
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    def start(self) -> None:
        """Start the workers in the background."""
        for _ in range(self.workers):
            self._replace()

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            self._closed = True
            workers, self._all = list(self._all), set()
        for w in workers:
            w.kill()

    def pids(self) -> list[int]:
        with self._lock:
            return [w.proc.pid for w in self._all]

    def _replace(self) -> None:
        threading.Thread(target=self._spawn, name="edgeclf-decoder-start", daemon=True).start()

    def _spawn(self) -> None:
        env = {**os.environ, **WORKER_ENV, "OPENCV_IO_MAX_IMAGE_PIXELS": str(self.max_pixels)}
        args = [str(self.max_pixels), str(self.memory_bytes), repr(self.cpu_seconds)]
        with self._lock:
            if self._closed:
                return
            worker = _Worker(args, env)
            self._all.add(worker)
        try:
            ready = worker.read(FRAME.size, time.monotonic() + START_TIMEOUT_S)
        except (TimeoutError, EOFError, OSError, ValueError):  # OSError/ValueError: close() shut its pipe meanwhile
            if not self._closed:
                log.warning("edgeclf: an image decoder process did not start; uploads have one decoder fewer")
            self._discard(worker)
            return
        assert FRAME.unpack(ready)[0] == READY
        self._idle.put(worker)

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()

    def decode(self, data: bytes, wait_seconds: float = 30.0) -> tuple[np.ndarray, ImageHeader]:
        """BGR uint8 pixels and header of ``data``: the header checks here, the decoding in a worker."""
        header = check_header(data, self.max_pixels)
        try:
            worker = self._idle.get(timeout=wait_seconds)
        except queue.Empty:
            raise DecoderBusy(f"no image decoder free within {wait_seconds:g} s") from None
        try:
            code, payload = self._ask(worker, data)
        except (TimeoutError, EOFError, OSError) as exc:
            self._discard(worker)
            self._replace()
            raise DecodeFailed(self._why(worker, isinstance(exc, TimeoutError))) from None
        self._idle.put(worker)
        if code != b"K":
            raise ERRORS[code](payload.decode(errors="replace"))
        height, width = SHAPE.unpack_from(payload)
        return np.frombuffer(payload, np.uint8, offset=SHAPE.size).reshape(height, width, 3), header

    def _ask(self, worker: _Worker, data: bytes) -> tuple[bytes, bytearray]:
        deadline = time.monotonic() + self.wall_seconds
        worker.proc.stdin.write(SIZE.pack(len(data)) + data)
        worker.proc.stdin.flush()
        code, length = FRAME.unpack(worker.read(FRAME.size, deadline))
        return code, worker.read(length, deadline)

    def _why(self, worker: _Worker, timed_out: bool) -> str:
        """Why a worker failed, for the client: the CPU limit, the deadline, or how it died."""
        status = worker.proc.returncode
        if status == -signal.SIGPROF:
            return f"decoding took over {self.cpu_seconds:g} s of CPU time"
        if timed_out:
            return f"decoding did not finish within {self.wall_seconds:g} s"
        return f"the decoder failed on this image (exit status {status})"
