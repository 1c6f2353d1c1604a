"""The metadata record that travels inside every model file edgeclf writes: labels, preprocessing, provenance.

A ``.tflite`` carries it as a named flatbuffer metadata entry (``edgeclf``), an ``.onnx`` as the
``edgeclf`` key of ``metadata_props``, a training run folder as ``metadata.json``. The record is plain JSON.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from edgeclf._version import __version__
from edgeclf.errors import InvalidModelError, ModelNotFoundError

METADATA_KEY = "edgeclf"
SCHEMA_VERSION = 1

COLOR_ORDERS = ("RGB", "BGR", "GRAY")
RESIZE_POLICIES = ("crop", "letterbox", "stretch")
LAYOUTS = ("NHWC", "NCHW")
OUTPUT_KINDS = ("probabilities", "logits", "auto")


def _floats(value: float | Sequence[float]) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),)
    out = tuple(float(v) for v in value)
    if len(out) not in (1, 3):
        raise ValueError(f"mean/std need 1 or 3 values, got {len(out)}")
    return out


@dataclass
class Preprocess:
    """How a uint8 image becomes the model's input tensor.

    ``input_size`` is (height, width). A pixel ``p`` (0..255, in ``color`` order) becomes
    ``(p - mean) / std`` per channel before any input quantisation. ``resize`` is ``crop`` (resize the
    short side to ``size / crop_ratio`` and take the centre), ``letterbox`` (fit inside, pad with
    ``pad_value``) or ``stretch`` (ignore the aspect ratio).
    """

    input_size: tuple[int, int] = (224, 224)
    layout: str = "NHWC"
    color: str = "RGB"
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: str = "crop"
    crop_ratio: float = 0.875
    pad_value: int = 0

    def __post_init__(self) -> None:
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.mean, self.std = _floats(self.mean), _floats(self.std)
        self.layout, self.color, self.resize = self.layout.upper(), self.color.upper(), self.resize.lower()
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.color not in COLOR_ORDERS:
            raise ValueError(f"color must be one of {COLOR_ORDERS}, got {self.color!r}")
        if self.resize not in RESIZE_POLICIES:
            raise ValueError(f"resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if not 0.0 < self.crop_ratio <= 1.0:
            raise ValueError(f"crop_ratio must be in (0, 1], got {self.crop_ratio}")
        if {len(self.mean), len(self.std)} - {1, self.channels}:
            raise ValueError(f"a {self.color} input has {self.channels} channel(s): mean and std need 1 or "
                             f"{self.channels} values, got {len(self.mean)} and {len(self.std)}")
        if any(s == 0 for s in self.std):
            raise ValueError("std must not be zero")
        if min(self.input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")

    @property
    def channels(self) -> int:
        """Channels of the model input: 1 for GRAY, else 3."""
        return 1 if self.color == "GRAY" else 3

    @classmethod
    def from_scale_offset(cls, scale: float, offset: float, **kw: Any) -> "Preprocess":
        """Build from ``x * scale + offset`` (the other common way of writing normalisation)."""
        return cls(mean=(-offset / scale,), std=(1.0 / scale,), **kw)


@dataclass
class Metadata:
    """Everything needed to use a model file on its own: labels, preprocessing, provenance, results."""

    labels: list[str] = field(default_factory=list)
    preprocess: Preprocess = field(default_factory=Preprocess)
    output: str = "auto"            # probabilities | logits | auto (decide from the values)
    quantization: str = "fp32"      # fp32 | fp16 | dynamic | int8 | qat-int8 ...
    source: str = ""                # what the file was made from (arch, run folder, foreign file)
    edgeclf_version: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # parity, training metrics, sparsity, ...
    checksum: str = ""              # sha256 of the file with this field zeroed (set by write_metadata)
    schema: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.preprocess, dict):
            self.preprocess = Preprocess(**self.preprocess)
        self.labels = [str(x) for x in self.labels]
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if not self.edgeclf_version:
            self.edgeclf_version = __version__
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["preprocess"]["input_size"] = list(self.preprocess.input_size)
        d["preprocess"]["mean"] = list(self.preprocess.mean)
        d["preprocess"]["std"] = list(self.preprocess.std)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=None, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Metadata":
        known = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        pre = dict(kw.get("preprocess") or {})
        pknown = {f.name for f in dataclasses.fields(Preprocess)}
        kw["preprocess"] = Preprocess(**{k: v for k, v in pre.items() if k in pknown})
        return cls(**kw)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Metadata":
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> "Metadata":
        """A copy with some fields changed (``preprocess`` may be given as a dict of changes)."""
        pre = changes.pop("preprocess", None)
        if isinstance(pre, dict):
            pre = dataclasses.replace(self.preprocess, **pre)
        new = dataclasses.replace(self, **changes)
        if pre is not None:
            new.preprocess = pre
        new.extra = dict(new.extra)
        return new


def read_labels(path: str | os.PathLike) -> list[str]:
    """Read a labels file: one label per line (blank lines dropped); ``index label`` lines are accepted."""
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: labels file not found")
    labels = []
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        head, _, rest = line.partition(" ")
        labels.append(rest.strip() if head.isdigit() and rest.strip() else line)
    if not labels:
        raise InvalidModelError(f"{p}: labels file is empty")
    return labels
