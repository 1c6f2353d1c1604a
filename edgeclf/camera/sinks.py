"""Where camera-loop results go: JSON lines, an annotated video file, a window. All close cleanly on shutdown.

Files are written to a temporary name beside the target and renamed when the run ends (normally, by a
signal, or by a lost source), so the target name only ever holds a complete JSON-lines file or a finalised
video container.
"""
from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np

from edgeclf.camera.loop import Result
from edgeclf.errors import EdgeclfError
from edgeclf.fileio import atomic_path

VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "MJPG"}


class JsonLinesSink:
    """One JSON object per result, to a file (committed at ``close``) or ``-`` for stdout (flushed per line)."""

    def __init__(self, target: str | os.PathLike) -> None:
        self._stack = contextlib.ExitStack()
        if os.fspath(target) == "-":
            self._fh: IO[str] = sys.stdout
        else:
            tmp = self._stack.enter_context(atomic_path(target))
            self._fh = self._stack.enter_context(open(tmp, "w", encoding="utf-8"))

    def write(self, record: dict[str, Any]) -> None:
        self._fh.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        """Close and rename the file into place (every line written is a complete object)."""
        self._stack.close()


class VideoSink:
    """The annotated frames as a video file (.mp4/.mov/.m4v: mp4v; .avi/.mkv: MJPG), opened at the first frame."""

    def __init__(self, target: str | os.PathLike, fps: float) -> None:
        self.target = Path(target)
        codec = VIDEO_CODECS.get(self.target.suffix.lower())
        if codec is None:
            raise EdgeclfError(f"{self.target}: unsupported video suffix; use one of {', '.join(VIDEO_CODECS)}")
        self.fourcc, self.fps = cv2.VideoWriter_fourcc(*codec), fps
        self._stack = contextlib.ExitStack()
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None

    def _open(self, size: tuple[int, int]) -> None:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(atomic_path(self.target))  # keeps the suffix, which picks the container
            writer = cv2.VideoWriter(str(tmp), self.fourcc, self.fps, size)
            if not writer.isOpened():
                raise EdgeclfError(f"{self.target}: cannot write video (no encoder for {self.target.suffix} here)")
            stack.callback(writer.release)  # finalise the container before the rename
            self._stack = stack.pop_all()
        self._writer, self._size = writer, size

    def write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self._open(size)
        elif size != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(image)

    def close(self) -> None:
        """Finalise the container and rename it into place."""
        self._stack.close()


def window_available() -> bool:
    """True when OpenCV has a GUI backend and there is a display to show it on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("edgeclf")
        cv2.destroyWindow("edgeclf")
    except cv2.error:
        return False
    return True


class Window:
    """A window showing the annotated frames; ``show`` returns False once the user pressed q/Esc or closed it."""

    def __init__(self, title: str = "edgeclf") -> None:
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL)

    def show(self, image: np.ndarray) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        return key not in (ord("q"), 27) and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1

    def close(self) -> None:
        cv2.destroyWindow(self.title)


def annotate(image: np.ndarray, result: Result) -> np.ndarray:
    """Draw the label, score, FPS and latency on the frame (in place) and return it."""
    h = image.shape[0]
    scale = max(0.4, h / 720)
    thick = max(2, round(scale * 2))  # OpenCV 5 draws 1-px text narrower than its outline
    lines = [f"{result.label} {result.score:.0%}",
             f"{result.fps:.1f} fps  {result.infer_ms:.1f} ms infer  {result.latency_ms:.0f} ms latency"]
    y = int(30 * scale) + 4
    for text in lines:
        cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(image, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick, cv2.LINE_AA)
        y += int(32 * scale) + 4
    return image
