"""The real-time classification loop: newest frame in, timestamped result out, for months without lag or leaks.

A capture thread drains the source so the model always sees the newest frame (a live camera never builds
a backlog), reconnects a lost source with backoff, and counts dropped and undecodable frames. Files and
folders give every frame by default (offline analysis); ``realtime=True`` paces them at their own frame
rate and drops stale frames exactly like a camera, so the loop can be measured against a known rate.

    for result in edgeclf.camera.stream(runtime, source=0):
        print(result.label, result.score, result.latency_ms)
"""
from __future__ import annotations

import collections
import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from edgeclf.camera.signals import on_stop_signals
from edgeclf.camera.sources import FrameSource, SourceError, SourceSpec, UndecodableFrame, open_source
from edgeclf.runtime import Prediction, Runtime

UNKNOWN = "unknown"
MAX_BACKOFF_S = 30.0


class Frame(NamedTuple):
    """One captured frame: its number in the source, wall-clock and monotonic capture times, pixels."""

    number: int
    ts: float
    t_mono: float
    image: np.ndarray


@dataclass
class Result:
    """What the model made of one frame, with the timing that shows whether the loop keeps up."""

    frame: int                 # frame number in the source (gaps = frames dropped to stay current)
    ts: float                  # capture time, seconds since the epoch
    index: int                 # class index, -1 when the score is below the threshold
    label: str                 # class label, "unknown" when the score is below the threshold
    score: float               # (smoothed) probability of the top class
    top_k: list[Prediction]
    infer_ms: float            # preprocessing + model time for this frame
    latency_ms: float          # capture to result
    fps: float                 # results per second over the last second or so
    dropped: int               # stale frames dropped so far
    skipped: int               # undecodable frames skipped so far
    image: np.ndarray = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-lines record (everything but the pixels)."""
        return {"frame": self.frame, "ts": round(self.ts, 6), "index": self.index, "label": self.label,
                "score": round(self.score, 6), "infer_ms": round(self.infer_ms, 3),
                "latency_ms": round(self.latency_ms, 3), "fps": round(self.fps, 2), "dropped": self.dropped,
                "skipped": self.skipped,
                "top_k": [p.to_dict() for p in self.top_k]}


@dataclass
class Stats:
    """Counters of a run, complete even when the source ends on a skipped frame."""

    processed: int = 0
    dropped: int = 0
    skipped: int = 0
    reconnects: int = 0
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started

    def to_dict(self) -> dict[str, Any]:
        secs = self.seconds
        return {"processed": self.processed, "dropped": self.dropped, "skipped": self.skipped,
                "reconnects": self.reconnects, "seconds": round(secs, 3),
                "fps": round(self.processed / secs, 2) if secs > 0 else 0.0}


class FrameGrabber:
    """Reads a source on its own thread; hands over only the newest frame (live) or every frame in order."""

    def __init__(self, source: FrameSource, stats: Stats, *, latest_only: bool, pace_fps: float | None,
                 reconnect: int, reconnect_delay: float) -> None:
        self.source, self.stats = source, stats
        self.latest_only, self.pace_fps = latest_only, pace_fps
        self.reconnect, self.reconnect_delay = reconnect, reconnect_delay
        self._cond = threading.Condition()
        self._slot: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"edgeclf-capture {source.name}", daemon=True)

    def start(self) -> None:
        """Start reading the (already opened) source."""
        self._thread.start()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or ``None`` if none arrived within ``timeout``; re-raises a capture failure."""
        with self._cond:
            if self._slot is None and not self._done:
                self._cond.wait(timeout)
            frame, self._slot = self._slot, None
            self._cond.notify_all()
            if frame is None and self._error is not None:
                raise self._error
            return frame

    @property
    def finished(self) -> bool:
        """True once the source has ended (or failed) and its last frame was taken."""
        with self._cond:
            return self._done and self._slot is None

    def stop(self) -> None:
        """Stop the thread and release the source."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        self.source.close()

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self.latest_only:
                if self._slot is not None:
                    self.stats.dropped += 1
            else:
                while self._slot is not None and not self._stop.is_set():
                    self._cond.wait(0.1)
            self._slot = frame
            self._cond.notify_all()

    def _reopen(self, why: str) -> None:
        """Re-open a lost live source with exponential backoff; ``SourceError`` after ``reconnect`` failures."""
        self.source.close()
        last = why
        for attempt in range(1, self.reconnect + 1):
            if self._stop.wait(min(self.reconnect_delay * 2 ** (attempt - 1), MAX_BACKOFF_S)):
                return
            try:
                self.source.open()
            except SourceError as exc:
                last = str(exc)
                continue
            self.stats.reconnects += 1
            return
        raise SourceError(f"{self.source.name}: source lost ({why}) and {self.reconnect} reconnect attempt(s) "
                          f"failed; last: {last}")

    def _run(self) -> None:
        number, t_first = 0, None
        try:
            while not self._stop.is_set():
                try:
                    image = self.source.read()
                    why = "no frame"
                except UndecodableFrame:
                    self.stats.skipped += 1
                    number += 1
                    continue
                except Exception as exc:  # noqa: BLE001 - OSError, cv2.error, picamera2 errors: a drop of this source
                    image, why = None, f"{type(exc).__name__}: {exc}"
                if image is None:
                    if not self.source.live:
                        if why != "no frame":
                            raise SourceError(f"{self.source.name}: reading failed ({why})")
                        break
                    self._reopen(why)
                    continue
                if self.pace_fps:
                    t_first = time.monotonic() if t_first is None else t_first
                    delay = t_first + number / self.pace_fps - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break
                self._publish(Frame(number, time.time(), time.monotonic(), image))
                number += 1
        except BaseException as exc:  # handed to the consumer thread, which raises it
            self._error = exc
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()


class ScoreSmoother:
    """Mean of the probability vectors of the last ``k`` frames (k=1: no smoothing)."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"smoothing window must be at least 1 frame, got {k}")
        self._window: collections.deque[np.ndarray] = collections.deque(maxlen=k)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        self._window.append(np.asarray(probs, dtype=np.float32).ravel())
        return probs if len(self._window) == 1 else np.mean(self._window, axis=0)


class RateMeter:
    """Events per second over a sliding window of the last ``n`` events."""

    def __init__(self, n: int = 30) -> None:
        self._times: collections.deque[float] = collections.deque(maxlen=n)

    def tick(self, t: float) -> float:
        self._times.append(t)
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


class Stream:
    """An iterable of ``Result`` over a source; closes its thread and source when exhausted or closed."""

    def __init__(self, runtime: Runtime, source: SourceSpec = 0, *, width: int | None = None,
                 height: int | None = None, fps: float | None = None, realtime: bool = False, top_k: int = 3,
                 smooth: int = 1, threshold: float = 0.0, reconnect: int = 5, reconnect_delay: float = 0.5,
                 max_frames: int | None = None, stop: threading.Event | None = None) -> None:
        self.runtime = runtime
        self.source = open_source(source, width=width, height=height, fps=fps)
        self.realtime, self.top_k, self.threshold = realtime, top_k, threshold
        self.max_frames = max_frames
        self.smoother = ScoreSmoother(smooth)
        self.reconnect, self.reconnect_delay = reconnect, reconnect_delay
        self.stop_event = stop or threading.Event()
        self.stats = Stats()
        self._grabber: FrameGrabber | None = None

    def open(self) -> FrameGrabber:
        """Open the source and start capturing (idempotent; iterating does it too)."""
        if self._grabber is not None:
            return self._grabber
        self.source.open()  # in the caller's thread: a source that cannot be opened fails here, at once
        pace = None
        if self.realtime and not self.source.live:
            pace = self.source.fps
            if not pace:
                self.source.close()
                raise SourceError(f"{self.source.name}: realtime pacing needs the frame rate; give fps")
        self._grabber = FrameGrabber(self.source, self.stats, latest_only=self.source.live or self.realtime,
                                     pace_fps=pace, reconnect=self.reconnect, reconnect_delay=self.reconnect_delay)
        self._grabber.start()
        return self._grabber

    def __iter__(self) -> Iterator[Result]:
        grabber = self.open()
        meter = RateMeter()
        try:
            while not self.stop_event.is_set():
                if self.max_frames is not None and self.stats.processed >= self.max_frames:
                    break
                frame = grabber.get(timeout=0.1)
                if frame is None:
                    if grabber.finished:
                        grabber.get(timeout=0)  # raises the capture thread's error, if it failed
                        break
                    continue
                yield self._classify(frame, meter)
        finally:
            self.close()

    def _classify(self, frame: Frame, meter: RateMeter) -> Result:
        t0 = time.monotonic()
        probs = self.smoother(self.runtime.probabilities(frame.image))
        t1 = time.monotonic()
        top = self.runtime.top(probs, self.top_k)
        index, label, score = top[0].index, top[0].label, top[0].score
        if score < self.threshold:
            index, label = -1, UNKNOWN
        self.stats.processed += 1
        return Result(frame.number, frame.ts, index, label, score, top, (t1 - t0) * 1e3,
                      (t1 - frame.t_mono) * 1e3, meter.tick(t1), self.stats.dropped, self.stats.skipped,
                      frame.image)

    def close(self) -> None:
        """Stop capturing and release the source (idempotent)."""
        if self._grabber is not None:
            self._grabber.stop()
            self._grabber = None
            self.stats.ended = time.monotonic()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def stream(runtime: Runtime, source: SourceSpec = 0, **options: Any) -> Stream:
    """Classify ``source`` frame by frame: ``for result in stream(runtime, 0): ...`` (options: see ``Stream``)."""
    return Stream(runtime, source, **options)


def run(runtime: Runtime, source: SourceSpec = 0, on_result: Callable[[Result], Any] | None = None,
        **options: Any) -> Stats:
    """Callback form of ``stream``: call ``on_result`` per result until it returns False or the source ends."""
    s = Stream(runtime, source, **options)
    for result in s:
        if on_result is not None and on_result(result) is False:
            break
    s.close()
    return s.stats


def stop_on_signals(event: threading.Event) -> contextlib.AbstractContextManager[None]:
    """Turn SIGINT/SIGTERM into ``event.set()`` for a clean shutdown; a second signal interrupts at once."""

    def second() -> None:
        raise KeyboardInterrupt

    return on_stop_signals(event.set, second)
