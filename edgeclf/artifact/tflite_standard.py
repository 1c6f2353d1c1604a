"""The standard TFLite metadata (what TF Hub, MediaPipe Model Maker and tflite-support's writers put in a
model), read without TensorFlow: class labels from the label file packed in the model's zip tail, input
normalisation and colour space. ``Runtime`` uses it for models without an edgeclf record.
"""
from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeclf.errors import InvalidModelError
from edgeclf.artifact.tflite import CorruptFlatbuffer, FlatBuf, FlatTable

METADATA_NAME = "TFLITE_METADATA"
_IDENTIFIER = b"M001"
_IMAGE_PROPERTIES, _NORMALIZATION, _AXIS_LABELS = 2, 1, 2  # ContentProperties / ProcessUnitOptions / file type
_COLOR_SPACES = {1: "RGB", 2: "GRAY"}


@dataclass
class StandardMetadata:
    """What a classifier's standard metadata says about its first input and output."""

    labels: list[str]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    color: str | None = None

    def preprocess_for(self, dtype: np.dtype, scale: float, zero_point: int) -> dict[str, Any]:
        """``Preprocess`` fields for an input of ``dtype``. A uint8 input is fed the raw pixels, as the TFLite
        Task Library does (its normalisation lives in the input quantisation): mean = zero point, std = 1/scale."""
        fields: dict[str, Any] = {"color": self.color} if self.color else {}
        if np.dtype(dtype) == np.uint8 and scale:
            return fields | {"mean": (float(zero_point),), "std": (1.0 / scale,)}
        if self.mean and self.std:
            fields |= {"mean": self.mean, "std": self.std}
        return fields


def _process_units(units: list[FlatTable]) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    for unit in units:
        if unit.scalar(0, "B") == _NORMALIZATION and unit.ref(1):
            options = unit.b.table(unit.ref(1))
            return tuple(options.ints(0, "f")) or None, tuple(options.ints(1, "f")) or None
    return None, None


def _label_file(tensor: FlatTable) -> str | None:
    """The name of the tensor's class-label file, preferring one without a locale or in English."""
    files = [(f.string(0), f.string(3)) for f in tensor.tables(6) if f.scalar(2, "B") == _AXIS_LABELS]
    files = [(name, locale) for name, locale in files if name]
    best = next((name for name, locale in files if locale in (None, "", "en")), None)
    return best or (files[0][0] if files else None)


def _packed_file(model: bytes, name: str, source: str) -> str:
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as packed:
            return packed.read(name).decode("utf-8")
    except Exception as exc:  # a damaged zip tail raises a dozen kinds (bad CRC, unknown method, zlib, EOF...)
        raise InvalidModelError(f"{source}: its TFLite metadata names the label file {name!r}, "
                                f"which is not packed readably in the model ({type(exc).__name__})") from None


def read_standard_metadata(model: bytes, metadata: bytes, source: str) -> StandardMetadata | None:
    """Parse a ``TFLITE_METADATA`` buffer of ``model``; None when it describes no input or output tensor."""
    if len(metadata) < 8 or metadata[4:8] != _IDENTIFIER:
        raise InvalidModelError(f"{source}: corrupt TFLite metadata (no 'M001' identifier)")
    b = FlatBuf(metadata)
    try:
        subgraphs = b.table(b.u32(0)).tables(3)
        if not subgraphs:
            return None
        inputs, outputs = subgraphs[0].tables(2), subgraphs[0].tables(3)
        mean = std = color = None
        if inputs:
            mean, std = _process_units(inputs[0].tables(4))
            if mean is None:  # a subgraph-level unit applies to all inputs
                mean, std = _process_units(subgraphs[0].tables(5))
            content = inputs[0].ref(3)
            if content:
                content_table = b.table(content)
                if content_table.scalar(0, "B") == _IMAGE_PROPERTIES and content_table.ref(1):
                    color = _COLOR_SPACES.get(b.table(content_table.ref(1)).scalar(0, "b"))
        label_file = _label_file(outputs[0]) if outputs else None
    except (CorruptFlatbuffer, struct.error, RecursionError) as exc:
        raise InvalidModelError(f"{source}: corrupt TFLite metadata ({exc})") from None
    if mean is not None and (std is None or not all(np.isfinite(s) and s > 0 for s in std)):
        raise InvalidModelError(f"{source}: TFLite metadata normalisation has a non-positive std {std}")
    labels = []
    if label_file:
        labels = [line.strip() for line in _packed_file(model, label_file, source).splitlines()]
        while labels and not labels[-1]:
            labels.pop()
    return StandardMetadata(labels, mean, std, color)
