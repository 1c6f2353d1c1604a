"""Feedback to training data: remember recently classified images, save a judged one under its true label.

``edgeclf serve`` keeps the last few uploaded images and shown camera frames in memory (bounded by count
and bytes) under a random id; a thumbs-up or a corrected label writes that image into
``SAMPLES/<label>/``, the class-per-folder layout ``edgeclf train`` reads.
"""
from __future__ import annotations

import collections
import datetime as _dt
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeclf.data.dataset import folder_name
from edgeclf.errors import DataError
from edgeclf.fileio import atomic_write_bytes

LIVE_JPEG_QUALITY = 95


@dataclass(frozen=True)
class Judged:
    """An image as it was classified: the uploaded bytes (with their extension) or a camera frame."""

    predicted: str
    data: bytes | None = None
    ext: str = ".jpg"
    frame: np.ndarray | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data) if self.data is not None else int(self.frame.nbytes if self.frame is not None else 0)

    def encoded(self) -> tuple[bytes, str]:
        """The bytes to store and their extension (camera frames become JPEG)."""
        if self.data is not None:
            return self.data, self.ext
        ok, buf = cv2.imencode(".jpg", self.frame, [cv2.IMWRITE_JPEG_QUALITY, LIVE_JPEG_QUALITY])
        if not ok:
            raise DataError("could not encode the camera frame as JPEG")
        return buf.tobytes(), ".jpg"


class RecentImages:
    """The last ``max_items`` judged images by id, also capped at ``max_bytes`` in total (oldest go first)."""

    def __init__(self, max_items: int = 32, max_bytes: int = 64 * 2**20) -> None:
        self.max_items, self.max_bytes = max_items, max_bytes
        self._items: collections.OrderedDict[str, Judged] = collections.OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def add(self, item: Judged, prefix: str) -> str:
        """Remember ``item``; return its new id."""
        key = f"{prefix}-{secrets.token_hex(8)}"
        with self._lock:
            self._items[key] = item
            self._bytes += item.nbytes
            while self._items and (len(self._items) > self.max_items or self._bytes > self.max_bytes):
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return key

    def get(self, key: str) -> Judged | None:
        with self._lock:
            return self._items.get(key)


class SampleStore:
    """Writes judged images into ``folder/<label>/<utc time>-<id><ext>`` atomically."""

    def __init__(self, folder: str | Path, labels: list[str]) -> None:
        self.folder = Path(folder)
        self.labels = set(labels)

    def save(self, key: str, item: Judged, label: str) -> Path:
        """Store ``item`` as an example of ``label`` (one of the model's labels); returns the file written."""
        if label not in self.labels:
            raise DataError(f"{label!r} is not one of the model's labels")
        data, ext = item.encoded()
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
        return atomic_write_bytes(self.folder / folder_name(label) / f"{stamp}-{key}{ext}", data)
