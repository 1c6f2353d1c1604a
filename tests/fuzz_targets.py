"""Fuzz targets for untrusted input (image bytes, HTTP requests) and the hostile images they start from.

Plain functions, so a fuzzing driver (hypothesis here, ``benchmarks/fuzz.py`` later) can call them:
``fuzz_decode(data)`` and ``fuzz_request(app, method, path, query, headers, body)`` raise AssertionError
when an input crashes, hangs or gets an answer that is not a JSON refusal.
"""
from __future__ import annotations

import asyncio
import json
import re
import struct
import time
import zlib
from typing import Any

import cv2
import numpy as np

from edgeclf.errors import ImageError
from edgeclf.runtime.images import decode_untrusted

DECODE_MAX_PIXELS = 4_000_000
DECODE_SECONDS = 2.0


# -- hostile images ----------------------------------------------------------------------------------------
def png_declaring(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few hundred bytes whose header declares width x height RGB pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = zlib.compress(b"\x00" * (1 + 3 * 64) * 8)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def hidden_frame_jpeg(width: int = 8000, height: int = 6000) -> bytes:
    """A width x height JPEG whose first segment is junk to libjpeg (FF 00) but a 'segment' to a naive parser,
    jumping over the real frame header to a fake 16x16 one in the scan data."""
    real = cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[1]
    body, jump = real.tobytes()[2:], 60000
    fake = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, 16, 16, 3) + bytes([1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1])
    return b"\xff\xd8\xff\x00" + struct.pack(">H", jump) + body[:jump - 2] + fake + body[jump - 2:]


def progressive_scan_bomb(side: int = 2000, scans: int = 2000) -> bytes:
    """A small progressive JPEG whose cheapest scan is repeated ``scans`` times (each repeat: a pass over the image)."""
    p = cv2.imencode(".jpg", np.full((side, side, 3), 100, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    end = p.rfind(b"\xff\xd9")
    starts = [m.start() for m in re.finditer(rb"\xff\xda", p)] + [end]
    cheapest = min((p[a:b] for a, b in zip(starts, starts[1:])), key=len)
    return p[:end] + cheapest * scans + b"\xff\xd9"


# -- targets -----------------------------------------------------------------------------------------------
def fuzz_decode(data: bytes, max_pixels: int = DECODE_MAX_PIXELS) -> None:
    """Decode in-process: an ``ImageError`` or a BGR image within the limit, quickly; anything else fails."""
    t0 = time.process_time()
    try:
        image, header = decode_untrusted(data, max_pixels)
    except ImageError:
        return
    finally:
        assert time.process_time() - t0 < DECODE_SECONDS, f"decode took {time.process_time() - t0:.1f} s CPU"
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] * image.shape[1] <= max_pixels


class InProcessApp:
    """An ASGI app run on its own event loop, lifespan started (decoder workers up) until ``close``."""

    def __init__(self, app: Any) -> None:
        self.app, self.loop = app, asyncio.new_event_loop()
        self._lifespan: asyncio.Queue[dict] = asyncio.Queue()
        self._sent: asyncio.Queue[dict] = asyncio.Queue()
        self._task = self.loop.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}},
                                               self._lifespan.get, self._sent.put))
        self._step("lifespan.startup")

    def _step(self, kind: str) -> None:
        self._lifespan.put_nowait({"type": kind})
        reply = self.loop.run_until_complete(asyncio.wait_for(self._sent.get(), 60))
        assert reply["type"] == f"{kind}.complete", reply

    def close(self) -> None:
        self._step("lifespan.shutdown")
        self.loop.run_until_complete(self._task)
        self.loop.close()

    def request(self, method: str, path: str, query: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
                body: bytes = b"", client: str = "127.0.0.1", timeout: float = 30) -> tuple[int, dict, bytes]:
        """(status, headers, body) of one request."""
        headers = headers if headers is not None else [(b"host", b"127.0.0.1:8080")]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                 "scheme": "http", "path": path, "raw_path": path.encode("utf-8", "surrogateescape"),
                 "query_string": query, "root_path": "", "headers": headers, "client": (client, 50000),
                 "server": ("127.0.0.1", 8080)}
        chunks = [{"type": "http.request", "body": body, "more_body": False}]
        out: list[dict] = []

        async def receive() -> dict:
            return chunks.pop(0) if chunks else {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            out.append(message)

        self.loop.run_until_complete(asyncio.wait_for(self.app(scope, receive, send), timeout))
        start = next(m for m in out if m["type"] == "http.response.start")
        data = b"".join(m.get("body", b"") for m in out if m["type"] == "http.response.body")
        return start["status"], {k.decode().lower(): v.decode() for k, v in start["headers"]}, data


def fuzz_request(app: InProcessApp, method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]],
                 body: bytes) -> int:
    """One request within 30 s: a 2xx, or a 4xx/503 JSON ``{"error": ...}``; never a 500. Returns the status."""
    status, out_headers, data = app.request(method, path, query, headers, body)
    assert status != 500 and status < 600, (method, path, query, status, data[:300])
    if status >= 400:
        assert out_headers.get("content-type", "").startswith("application/json"), (path, status, out_headers)
        error = json.loads(data)["error"]
        assert isinstance(error, str) and error, (path, status, data[:300])
    return status
