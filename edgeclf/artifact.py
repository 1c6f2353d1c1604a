"""The artifact contract: the metadata record that travels inside every model file edgeclf writes.

A ``.tflite`` carries it as a named flatbuffer metadata entry (``edgeclf``), an ``.onnx`` as the
``edgeclf`` key of ``metadata_props``; a training run folder as ``metadata.json``. The record is plain
JSON, so reading it needs neither TensorFlow nor the ``onnx`` package.
"""
from __future__ import annotations

import dataclasses
import hashlib
import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import InvalidModelError, ModelNotFoundError
from .fileio import atomic_write_bytes

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
        if any(s == 0 for s in self.std):
            raise ValueError("std must not be zero")
        if min(self.input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")

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
            from . import __version__
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


_CHECKSUM_FIELD = b'"checksum": "'
_UNSEALED = "0" * 64


def _checksum_span(data: bytes, checksum: str, source: str) -> int:
    at = data.find(_CHECKSUM_FIELD + checksum.encode())
    if at < 0:
        raise InvalidModelError(f"{source}: edgeclf metadata checksum not found in the file")
    return at + len(_CHECKSUM_FIELD)


def _digest(data: bytes, start: int) -> str:
    h = hashlib.sha256()
    h.update(memoryview(data)[:start])
    h.update(_UNSEALED.encode())
    h.update(memoryview(data)[start + 64:])
    return h.hexdigest()


def seal(data: bytes) -> bytes:
    """Fill the unsealed checksum of the embedded record with the sha256 of the whole file."""
    start = _checksum_span(data, _UNSEALED, "model")
    return data[:start] + _digest(data, start).encode() + data[start + 64:]


def verify_sealed(data: bytes, source: str) -> str | None:
    """Check a file's bytes against the checksum sealed into its record, before any native code parses it.

    Returns the checksum, or ``None`` for a file edgeclf did not seal (a model made elsewhere); raises
    ``InvalidModelError`` when the bytes changed after sealing (bit rot, truncation, a bad copy).
    """
    at = data.find(_CHECKSUM_FIELD)
    if at < 0:
        return None
    start = at + len(_CHECKSUM_FIELD)
    checksum = data[start:start + 64].decode("ascii", "replace")
    if _digest(data, start) != checksum:
        raise InvalidModelError(f"{source}: checksum mismatch: the file was corrupted or modified after "
                                "edgeclf wrote it (re-export it, or re-embed its metadata with edgeclf)")
    return checksum


def parse_embedded(raw: bytes | str | None, source: str, sealed: str | None) -> Metadata | None:
    """Decode an embedded record; it must carry the checksum that ``verify_sealed`` found in the file."""
    if raw is None:
        return None
    try:
        meta = Metadata.from_json(raw)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{source}: corrupt edgeclf metadata ({exc})") from None
    if not meta.checksum or meta.checksum != sealed:
        raise InvalidModelError(f"{source}: edgeclf metadata has no valid checksum (corrupted or hand-edited)")
    return meta


def read_metadata(path: str | os.PathLike) -> Metadata | None:
    """Read (and checksum-verify) the edgeclf record of a .tflite, .onnx or run folder; ``None`` if absent."""
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"{p}: no such file")
    if p.is_dir():
        mfile = p / "metadata.json"
        return Metadata.from_json(mfile.read_text()) if mfile.is_file() else None
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        from .tflite_format import inspect_tflite, read_model_bytes
        data = read_model_bytes(p)
        raw = inspect_tflite(p, data).metadata.get(METADATA_KEY)
    elif suffix == ".onnx":
        from .onnx_format import read_onnx_metadata
        data = p.read_bytes()
        raw = read_onnx_metadata(p).get(METADATA_KEY)
    else:
        raise InvalidModelError(f"{p}: unsupported model format {suffix or '(no suffix)'}; expected .tflite or .onnx")
    return parse_embedded(raw, str(p), verify_sealed(data, str(p)))


def write_metadata(path: str | os.PathLike, meta: Metadata, out: str | os.PathLike | None = None) -> Path:
    """Embed ``meta`` (sealed with a checksum) into the .tflite/.onnx at ``path``; write ``out`` atomically."""
    p = Path(path)
    dst = Path(out) if out is not None else p
    record = meta.replace(checksum=_UNSEALED).to_json()
    suffix = p.suffix.lower()
    if suffix == ".tflite":
        from .tflite_format import embed_tflite_metadata, read_model_bytes
        data = embed_tflite_metadata(read_model_bytes(p), {METADATA_KEY: record.encode()}, str(p))
    elif suffix == ".onnx":
        from .onnx_format import check_onnx_bytes, embed_onnx_metadata
        check_onnx_bytes(p)
        data = embed_onnx_metadata(p.read_bytes(), {METADATA_KEY: record}, str(p))
    else:
        raise InvalidModelError(f"{p}: cannot embed metadata into {suffix or '(no suffix)'}")
    return atomic_write_bytes(dst, seal(data))
