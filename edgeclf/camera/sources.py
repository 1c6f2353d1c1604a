"""Frame sources for the camera loop: cameras, V4L2 devices, video files, network streams, image folders, picamera2.

Every source has the same small interface (``open``/``read``/``close`` plus ``live`` and ``fps``) so the
capture thread in ``edgeclf.camera`` can drain, pace and reconnect any of them the same way. ``read``
returns the next BGR uint8 frame, ``None`` when a finite source is finished or a live one dropped, and raises
``UndecodableFrame`` for a frame that arrived but could not be decoded (the loop skips and counts it).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol, Union, runtime_checkable

import cv2
import numpy as np

from edgeclf.errors import EdgeclfError, ImageError
from edgeclf.runtime.images import IMAGE_SUFFIXES, load_image

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_URL_PASSWORD = re.compile(r"(://[^/?#@:\s]*):[^/?#\s]*@")
_QUERY_SECRET = re.compile(r"([?&;](?:pass(?:word)?|pwd|token|key|secret|auth|sig(?:nature)?)=)[^&;#\s]*",
                           re.IGNORECASE)
PICAMERA_RE = re.compile(r"^picamera2?(?::(\d+))?$", re.IGNORECASE)


def redact_url(text: str) -> str:
    """``text`` with URL passwords and secret query values masked: ``rtsp://user:***@cam/1?token=***``."""
    return _QUERY_SECRET.sub(r"\1***", _URL_PASSWORD.sub(r"\1:***@", text))


class SourceError(EdgeclfError, RuntimeError):
    """A frame source cannot be opened, or was lost and did not come back after the reconnect attempts."""


class UndecodableFrame(Exception):
    """One frame arrived but could not be decoded; the loop skips it and counts it."""


@runtime_checkable
class FrameSource(Protocol):
    """What the capture thread needs from a source of frames."""

    name: str
    live: bool             # frames arrive in real time (camera, stream): stale ones are dropped, drops reconnect
    fps: float | None      # the source's own frame rate when known

    def open(self) -> None:
        """Open (or re-open) the source; raise ``SourceError`` saying why when it cannot be."""

    def read(self) -> np.ndarray | None:
        """Next BGR uint8 frame; ``None`` at the end / on a drop; ``UndecodableFrame`` for a bad frame."""

    def close(self) -> None:
        """Release the device, file or connection; safe to call twice."""


SourceSpec = Union[int, str, os.PathLike, FrameSource]


class OpenCVSource:
    """A camera index, V4L2 device path, video file or stream URL read through ``cv2.VideoCapture``."""

    def __init__(self, target: int | str, kind: str, backend: int = cv2.CAP_ANY,
                 width: int | None = None, height: int | None = None, fps: float | None = None) -> None:
        self.target, self.kind, self.backend = target, kind, backend
        self.live = kind != "video file"
        self.requested = {cv2.CAP_PROP_FRAME_WIDTH: width, cv2.CAP_PROP_FRAME_HEIGHT: height, cv2.CAP_PROP_FPS: fps}
        self.name = f"camera {target}" if isinstance(target, int) else redact_url(str(target))
        self.fps: float | None = None
        self._cap: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        cap = cv2.VideoCapture(self.target, self.backend)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: cannot open {self.kind} (not present, busy, unsupported or unreachable)")
        if self.live:
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2 honours it; other backends ignore it (the thread drains anyway)
            for prop, value in self.requested.items():
                if value:
                    cap.set(prop, float(value))
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(fps) if fps and 0 < fps < 1000 else None
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None or not self._cap.grab():
            return None
        ok, frame = self._cap.retrieve()
        if not ok or frame is None or frame.size == 0:
            raise UndecodableFrame(f"{self.name}: frame could not be decoded")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class FolderSource:
    """The images of a folder, in sorted name order, as a finite sequence of frames."""

    live = False

    def __init__(self, folder: str | os.PathLike, fps: float | None = None) -> None:
        self.folder = Path(folder)
        self.name = str(self.folder)
        self.fps = fps
        self._files: list[Path] = []
        self._next = 0

    def open(self) -> None:
        self._files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not self._files:
            raise SourceError(f"{self.folder}: no images in this folder (looked for {', '.join(IMAGE_SUFFIXES)})")
        self._next = 0

    def read(self) -> np.ndarray | None:
        if self._next >= len(self._files):
            return None
        path = self._files[self._next]
        self._next += 1
        try:
            return load_image(path)
        except ImageError as exc:
            raise UndecodableFrame(str(exc)) from None

    def close(self) -> None:
        self._files = []


class PiCameraSource:
    """The Raspberry Pi camera module through picamera2 (libcamera), frames as BGR."""

    live = True

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None,
                 fps: float | None = None) -> None:
        self.index, self.size, self.fps = index, (width or 640, height or 480), fps
        self.name = f"picamera2 camera {index}"
        self._cam = None

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise SourceError(f"{self.name}: picamera2 is not installed (sudo apt install python3-picamera2)") from None
        self.close()
        try:
            cam = Picamera2(self.index)
            controls = {"FrameRate": float(self.fps)} if self.fps else {}
            # libcamera's "RGB888" is laid out B, G, R in memory: exactly OpenCV's BGR
            cam.configure(cam.create_video_configuration(main={"size": self.size, "format": "RGB888"},
                                                         controls=controls))
            cam.start()
        except Exception as exc:  # picamera2 raises RuntimeError/IndexError/OSError depending on the failure
            raise SourceError(f"{self.name}: cannot open the camera ({exc})") from None
        self._cam = cam

    def read(self) -> np.ndarray | None:
        if self._cam is None:
            return None
        try:
            return self._cam.capture_array("main")
        except (RuntimeError, OSError):
            return None

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
            finally:
                self._cam.close()
                self._cam = None


def open_source(spec: SourceSpec, width: int | None = None, height: int | None = None,
                fps: float | None = None) -> FrameSource:
    """Turn ``0``, ``/dev/video0``, ``clip.mp4``, ``rtsp://...``, ``images/`` or ``picamera2`` into a source object."""
    if isinstance(spec, FrameSource):
        return spec
    cam = dict(width=width, height=height, fps=fps)
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return OpenCVSource(int(spec), "camera", **cam)
    text = os.fspath(spec)
    match = PICAMERA_RE.match(text)
    if match:
        return PiCameraSource(int(match.group(1) or 0), **cam)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in STREAM_SCHEMES:
        return OpenCVSource(text, "stream", cv2.CAP_FFMPEG, **cam)
    if text.startswith("/dev/"):
        return OpenCVSource(text, "camera", cv2.CAP_V4L2, **cam)
    path = Path(text)
    if path.is_dir():
        return FolderSource(path, fps=fps)
    if path.is_file():
        return OpenCVSource(text, "video file")
    raise SourceError(f"{text}: no such file, folder, camera or stream URL")
