"""The standard TFLite metadata (what TF Hub, MediaPipe Model Maker and tflite-support's writers put in a
model), read and written without TensorFlow: class labels in a label file packed in the model's zip tail, input
normalisation and colour space. ``Runtime`` reads it for models without an edgeclf record; every .tflite edgeclf
writes carries it too, so MediaPipe Tasks and the TFLite Task Library open the file as it is.
"""
from __future__ import annotations

import io
import struct
import zipfile
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from edgeclf.artifact.metadata import Preprocess
from edgeclf.artifact.tflite import CorruptFlatbuffer, FlatBuf, FlatTable, TFLiteModelInfo
from edgeclf.errors import InvalidModelError

METADATA_NAME = "TFLITE_METADATA"
LABEL_FILE = "labels.txt"
_IDENTIFIER = b"M001"
_MIN_PARSER_VERSION = "1.0.0"  # every field written here is in metadata schema 1.0.0
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES, _NORMALIZATION, _AXIS_LABELS = 1, 2, 1, 2  # Content / ProcessUnit / file type
_COLOR_SPACES = {1: "RGB", 2: "GRAY"}
_COLOR_CODES = {"RGB": 1, "GRAY": 2, "BGR": 0}  # BGR has no enum value: UNKNOWN, which readers refuse, not misread


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


# ---- writing: the ``M001`` flatbuffer, table by table (field slots from metadata_schema.fbs) ----

def _table(b: Any, refs: dict[int, int | None], small: dict[int, int] | None = None) -> int:
    """One table: ``refs`` maps a field slot to a built offset (None = absent), ``small`` to a byte value."""
    small = small or {}
    b.StartObject(max([*refs, *small, -1]) + 1)
    for slot, off in refs.items():
        if off:
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
    for slot, value in small.items():
        b.PrependUint8Slot(slot, value, 0)  # enums and union types are bytes with default 0
    return b.EndObject()


def _floats(b: Any, values: Sequence[float]) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype="<f4"))


def _tables(b: Any, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _stats(b: Any, lo: Sequence[float], hi: Sequence[float]) -> int:
    """Stats{max 0, min 1}: the value range readers may check a tensor against."""
    return _table(b, {0: _floats(b, hi), 1: _floats(b, lo)})


def _classifier_buffer(name: str, description: str, color: int, mean: Sequence[float], std: Sequence[float],
                       in_stats: tuple[list[float], list[float]] | None, out_stats: tuple[float, float] | None,
                       out_description: str) -> bytes:
    """ModelMetadata for one subgraph: an image input and a score output labelled by the packed label file."""
    import flatbuffers

    b = flatbuffers.Builder(1024)
    s = b.CreateString
    image = _table(b, {}, {0: color})  # ImageProperties{color_space 0}
    in_content = _table(b, {1: image}, {0: _IMAGE_PROPERTIES})  # Content{type 0, properties 1}
    norm = _table(b, {0: _floats(b, mean), 1: _floats(b, std)})  # NormalizationOptions{mean 0, std 1}
    unit = _table(b, {1: norm}, {0: _NORMALIZATION})  # ProcessUnit{options_type 0, options 1}
    # TensorMetadata{name 0, description 1, content 3, process_units 4, stats 5, associated_files 6}
    in_tensor = _table(b, {0: s("image"), 1: s("Input image to be classified."), 3: in_content,
                           4: _tables(b, [unit]), 5: _stats(b, *in_stats) if in_stats else None})
    label_file = _table(b, {0: s(LABEL_FILE), 1: s("Labels for categories that the model can recognize.")},
                        {2: _AXIS_LABELS})  # AssociatedFile{name 0, description 1, type 2}
    out_content = _table(b, {1: _table(b, {})}, {0: _FEATURE_PROPERTIES})
    # the output needs a name: MediaPipe uses it as the head name and dereferences it unchecked
    out_tensor = _table(b, {0: s("score"), 1: s(out_description), 3: out_content,
                            5: _stats(b, [out_stats[0]], [out_stats[1]]) if out_stats else None,
                            6: _tables(b, [label_file])})
    subgraph = _table(b, {0: s(name), 2: _tables(b, [in_tensor]), 3: _tables(b, [out_tensor])})
    root = _table(b, {0: s(name), 1: s(description) if description else None, 3: _tables(b, [subgraph]),
                      7: s(_MIN_PARSER_VERSION)})  # ModelMetadata{name 0, description 1, subgraphs 3, version 7}
    b.Finish(root, file_identifier=_IDENTIFIER)
    return bytes(b.Output())


def _per_channel(pre: Preprocess) -> tuple[list[float], list[float]]:
    """Mean and std as lists of one length (a single value is repeated to match the other)."""
    n = max(len(pre.mean), len(pre.std))
    return list(pre.mean) * (n // len(pre.mean)), list(pre.std) * (n // len(pre.std))


def _label_text(labels: Sequence[str], classes: int, source: str) -> bytes:
    """The label file; every label must come back unchanged from a line-based reader."""
    if len(labels) != classes:
        raise InvalidModelError(f"{source}: {len(labels)} labels but the model outputs {classes} classes")
    for i, label in enumerate(labels):
        if not label.strip() or label != label.strip() or "\n" in label or "\r" in label:
            raise InvalidModelError(f"{source}: label {i} ({label!r}) cannot go in a label file: it must be one "
                                    "non-empty line without outer spaces")
    return ("\n".join(labels) + "\n").encode("utf-8")


def classifier_metadata(info: TFLiteModelInfo, labels: Sequence[str], pre: Preprocess, name: str,
                        description: str, source: str) -> tuple[bytes, dict[str, bytes]]:
    """The ``TFLITE_METADATA`` buffer and packed files describing an image classifier with ``labels`` and ``pre``."""
    if len(info.inputs) != 1 or len(info.outputs) != 1:
        raise InvalidModelError(f"{source}: an image classifier needs 1 input and 1 output, the model has "
                                f"{len(info.inputs)} and {len(info.outputs)}")
    inp, out = info.inputs[0], info.outputs[0]
    if len(inp.shape) != 4 or inp.shape[3] != pre.channels:
        raise InvalidModelError(f"{source}: colour {pre.color} needs a (batch, height, width, {pre.channels}) "
                                f"input, the model's is {inp.shape}")
    mean, std = _per_channel(pre)
    in_stats = (([0.0], [255.0]) if inp.dtype == "uint8" else
                ([-m / s for m, s in zip(mean, std)], [(255 - m) / s for m, s in zip(mean, std)])
                if inp.dtype == "float32" else None)
    out_stats = (0.0, 255.0) if out.dtype == "uint8" else (0.0, 1.0) if info.softmax_output else None
    classes = out.shape[-1] if out.shape else 0
    out_description = (f"Probabilities of the {classes} labels respectively." if info.softmax_output else
                       f"Scores (not probabilities: no softmax) of the {classes} labels respectively.")
    buffer = _classifier_buffer(name, description, _COLOR_CODES[pre.color], mean, std, in_stats, out_stats,
                                out_description)
    return buffer, {LABEL_FILE: _label_text(labels, classes, source)}


def mediapipe_issues(info: TFLiteModelInfo, pre: Preprocess) -> list[str]:
    """Why MediaPipe Tasks' ImageClassifier would refuse (or misread) this classifier; [] when it opens it as is."""
    inp, out = info.inputs[0], info.outputs[0]
    issues = []
    if inp.dtype not in ("float32", "uint8"):
        issues.append(f"its {inp.dtype} input is refused (MediaPipe takes float32 or uint8: convert with --io uint8)")
    if out.dtype not in ("float32", "uint8"):
        issues.append(f"its {out.dtype} output is refused (MediaPipe takes float32 or uint8)")
    if pre.color != "RGB":
        issues.append(f"it takes {pre.color} images; MediaPipe feeds only RGB")
    if inp.dtype == "float32" and (len(set(pre.mean)) > 1 or len(set(pre.std)) > 1):
        issues.append("per-channel normalisation of a float input is not implemented in MediaPipe")
    if inp.dtype == "uint8" and inp.scale and any(abs(inp.zero_point[0] - m) > 1.5 or abs(inp.scale[0] * s - 1) > 0.02
                                                  for m, s in zip(*_per_channel(pre))):
        issues.append(f"MediaPipe feeds raw 0..255 pixels to the uint8 input, whose quantisation (scale "
                      f"{inp.scale[0]:.6g}, zero point {inp.zero_point[0]}) is not mean {pre.mean} / std {pre.std}")
    if not info.softmax_output:
        issues.append("its output is not a softmax: MediaPipe reports raw logits as scores")
    return issues
