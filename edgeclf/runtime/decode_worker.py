"""One image decoder process (``python -m edgeclf.runtime.decode_worker``), run by ``decode_pool``.

Its memory (``RLIMIT_AS``) and the CPU time of each image (a profiling timer, whose SIGPROF ends the
process) are bounded, and OpenCV's own pixel limit comes from ``OPENCV_IO_MAX_IMAGE_PIXELS`` set by the pool before
OpenCV was imported. Protocol on stdin/stdout: ``<Q length><bytes>`` in; a status byte, ``<Q length>`` and
a payload out (``K``: ``<II height width>`` + BGR pixels; ``T``/``U``/``E``: the error message).
"""
from __future__ import annotations

import os
import resource
import signal
import struct
import sys
from typing import BinaryIO

import cv2

from edgeclf.errors import ImageError
from edgeclf.runtime.image_headers import ImageTooLarge, UnsupportedImage
from edgeclf.runtime.images import decode_untrusted

READY = b"R"
FRAME = struct.Struct("<cQ")
SIZE = struct.Struct("<Q")
SHAPE = struct.Struct("<II")
ERROR_CODES = ((ImageTooLarge, b"T"), (UnsupportedImage, b"U"), (ImageError, b"E"))


def _virtual_bytes() -> int:
    """This process's address space now (VmSize)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = stream.read(n)
    return data if len(data) == n else None


def _reply(out: BinaryIO, code: bytes, *parts: bytes | memoryview) -> None:
    out.write(FRAME.pack(code, sum(len(p) for p in parts)))
    for part in parts:
        out.write(part)
    out.flush()


def serve(max_pixels: int, memory_bytes: int, cpu_seconds: float, inp: BinaryIO, out: BinaryIO) -> None:
    """Decode requests until stdin closes; each one gets ``cpu_seconds`` of CPU time (SIGPROF ends the process)."""
    cv2.setNumThreads(1)
    resource.setrlimit(resource.RLIMIT_AS, (_virtual_bytes() + memory_bytes, resource.RLIM_INFINITY))
    _reply(out, READY)
    while (head := _read_exact(inp, SIZE.size)) is not None:
        data = _read_exact(inp, SIZE.unpack(head)[0])
        if data is None:
            return
        signal.setitimer(signal.ITIMER_PROF, cpu_seconds)
        try:
            image, _ = decode_untrusted(data, max_pixels)
        except ImageError as exc:
            code = next(c for kind, c in ERROR_CODES if isinstance(exc, kind))
            _reply(out, code, str(exc).encode())
            continue
        except MemoryError:
            _reply(out, b"T", f"decoding needs more than {memory_bytes / 2**20:.0f} MB".encode())
            continue
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        image = image if image.flags.c_contiguous else image.copy()
        _reply(out, b"K", SHAPE.pack(*image.shape[:2]), memoryview(image).cast("B"))


def main() -> None:
    """Entry point: ``MAX_PIXELS MEMORY_BYTES CPU_SECONDS``; the protocol owns stdout, all else goes to stderr."""
    max_pixels, memory_bytes, cpu_seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # a library printing to stdout must not corrupt the replies
    serve(max_pixels, memory_bytes, cpu_seconds, sys.stdin.buffer, out)


if __name__ == "__main__":
    main()
