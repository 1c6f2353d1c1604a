"""The one camera loop behind ``edgeclf serve``: classify on a thread, share the newest result with every client.

Three stages that never wait for one another: the camera loop (``edgeclf.camera.stream``) classifies the
newest frame; an encoder thread annotates and JPEG-encodes the newest result while anyone is watching; web
clients are woken on the server's event loop and take the newest JPEG. A slow or stalled client only
misses frames, and ten clients cost the camera loop what one does. Files and folders loop forever, paced
at their own frame rate; a lost camera is retried until it comes back.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Any, AsyncIterator

import cv2

from edgeclf.camera.loop import RateMeter, Result, stream
from edgeclf.camera.sinks import annotate
from edgeclf.camera.sources import FolderSource, SourceError, SourceSpec, open_source, redact_url
from edgeclf.runtime import Runtime
from edgeclf.serve.metrics import Metrics

DEFAULT_FOLDER_FPS = 5.0      # pace of an image folder given without --fps
RETRY_S = (1.0, 30.0)         # first and longest wait before re-opening a failed source
JPEG_QUALITY = 80
STALE_FRAMES = 5              # /healthz: unhealthy when no frame came for this many frame intervals ...
STALE_MIN_S = 2.0             # ... or this long, whichever is longer
START_GRACE_S = 15.0          # time for the first frame (opening the camera, the first inference)


class LiveFeed:
    """Runs the camera loop for ``source`` and publishes its newest result and annotated JPEG."""

    def __init__(self, runtime: Runtime, source: SourceSpec, metrics: Metrics, *, top_k: int = 5,
                 fps: float | None = None, width: int | None = None, height: int | None = None) -> None:
        self.runtime, self.metrics, self.top_k = runtime, metrics, top_k
        self.source = open_source(source, width=width, height=height, fps=fps)
        if isinstance(self.source, FolderSource) and not self.source.fps:
            self.source.fps = DEFAULT_FOLDER_FPS
        if not self.source.live:  # a missing file or empty folder is a mistake to report now, not to retry
            self.source.open()
            self.source.close()
        self.status = "starting"
        self.frames = 0
        self._rate = RateMeter()  # over the whole feed: a looping file restarts the stream's own meter
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._result: Result | None = None
        self._result_seq = 0
        self._jpeg: tuple[int, bytes] | None = None  # (result number, JPEG), swapped as one reference
        self._viewers = 0
        self._last_frame_at = float("inf")   # monotonic time of the newest frame (start() + grace before the first)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jpeg_ready: asyncio.Event | None = None
        self._threads = [threading.Thread(target=self._camera_loop, name="edgeclf-serve-camera", daemon=True),
                         threading.Thread(target=self._encoder_loop, name="edgeclf-serve-encoder", daemon=True)]

    # -- lifecycle (called on the server's event loop) ----------------------------------------------
    def start(self) -> None:
        """Start the threads; JPEG readiness is signalled on the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._last_frame_at = time.monotonic() + START_GRACE_S
        self._jpeg_ready = asyncio.Event()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Stop the camera and encoder threads and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._jpeg_ready is not None:
            self._jpeg_ready.set()
        for t in self._threads:
            if t.is_alive():
                t.join(timeout=5.0)

    @property
    def healthy(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the feed is unhealthy (the source's error, or frames have stopped coming), or None."""
        if self.status.startswith("error"):
            return self.status
        fps = self.source.fps or (self._result.fps if self._result is not None else 0.0)
        limit = max(STALE_FRAMES / fps if fps > 0 else 0.0, STALE_MIN_S)
        age = time.monotonic() - self._last_frame_at
        if self.status == "running" and age > limit:
            return f"no new frame for {age:.1f} s (limit {limit:g} s)"
        return None

    # -- what clients read --------------------------------------------------------------------------
    def latest(self) -> Result | None:
        """The newest result (None before the first frame)."""
        with self._cond:
            return self._result

    async def jpegs(self) -> AsyncIterator[bytes]:
        """Annotated JPEGs for one client: each is the newest at the time; frames it is too slow for are skipped."""
        assert self._jpeg_ready is not None, "start() first"
        self._viewers += 1
        self.metrics.set("edgeclf_stream_clients", self._viewers)
        with self._cond:
            self._cond.notify_all()  # the encoder may be idle, waiting for a viewer
        seen = -1
        try:
            while not self._stop.is_set():
                ready, latest = self._jpeg_ready, self._jpeg
                if latest is not None and latest[0] != seen:
                    seen = latest[0]
                    yield latest[1]
                    continue
                await ready.wait()
        finally:
            self._viewers -= 1
            self.metrics.set("edgeclf_stream_clients", self._viewers)

    def _jpeg_published(self) -> None:
        """On the event loop: wake every client waiting for a JPEG."""
        ready, self._jpeg_ready = self._jpeg_ready, asyncio.Event()
        if ready is not None:
            ready.set()

    # -- the threads --------------------------------------------------------------------------------
    def _camera_loop(self) -> None:
        retry = RETRY_S[0]
        while not self._stop.is_set():
            try:
                frames = stream(self.runtime, self.source, realtime=not self.source.live, top_k=self.top_k,
                                stop=self._stop)
                frames.open()
                self.status = "running"
                retry = RETRY_S[0]
                dropped, produced = 0, 0
                for result in frames:
                    self._publish(result)
                    self.metrics.inc("edgeclf_frames_dropped_total", result.dropped - dropped)
                    dropped, produced = result.dropped, produced + 1
                if not produced and not self._stop.is_set():  # don't spin re-opening a file with nothing usable
                    raise SourceError(f"{self.source.name}: ended without a decodable frame")
                if self.source.fps:  # the last frame of a pass is shown for one frame time too
                    self._stop.wait(1.0 / self.source.fps)
            except Exception as exc:  # noqa: BLE001 - SourceError or a device failure: report, wait, retry
                self.status = f"error: {redact_url(str(exc))}"
                self.metrics.inc("edgeclf_errors_total", kind="camera")
                self._stop.wait(retry)
                retry = min(retry * 2, RETRY_S[1])
        self.status = "stopped"

    def _publish(self, result: Result) -> None:
        result = dataclasses.replace(result, fps=self._rate.tick(time.monotonic()))
        self.frames += 1
        self._last_frame_at = time.monotonic()
        self.metrics.inc("edgeclf_frames_total")
        self.metrics.observe("edgeclf_inference_seconds", result.infer_ms / 1e3, source="camera")
        self.metrics.set("edgeclf_camera_fps", round(result.fps, 2))
        with self._cond:
            self._result = result
            self._result_seq += 1
            self._cond.notify_all()

    def _encoder_loop(self) -> None:
        done = 0
        while True:
            with self._cond:
                while not self._stop.is_set() and (self._result_seq == done or not self._viewers):
                    self._cond.wait(0.5)
                if self._stop.is_set():
                    return
                result, done = self._result, self._result_seq
            assert result is not None
            ok, buf = cv2.imencode(".jpg", annotate(result.image.copy(), result),
                                   [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok and self._loop is not None:
                self._jpeg = (done, buf.tobytes())
                try:
                    self._loop.call_soon_threadsafe(self._jpeg_published)
                except RuntimeError:  # the event loop closed during shutdown
                    return

    def describe(self) -> dict[str, Any]:
        """Source name, state and frame count, for /info and /healthz."""
        return {"source": self.source.name, "status": self.status, "frames": self.frames,
                "live": self.source.live, "fps": self.source.fps}
