"""Model files as bytes: read one whole, read its sealed edgeclf record, write a record into it atomically."""
from __future__ import annotations

import os
from pathlib import Path

from edgeclf.artifact.formats import format_of
from edgeclf.artifact.metadata import METADATA_KEY, Metadata
from edgeclf.artifact.onnx import embed_onnx_metadata, read_onnx_metadata
from edgeclf.artifact.seal import UNSEALED, parse_embedded, seal, verify_sealed
from edgeclf.artifact.tflite import TFLiteModelInfo, embed_tflite_metadata, inspect_tflite
from edgeclf.artifact.tflite_standard import METADATA_NAME, classifier_metadata
from edgeclf.errors import InvalidModelError, ModelNotFoundError
from edgeclf.fileio import atomic_write_bytes


def read_model_bytes(path: str | os.PathLike) -> bytes:
    """The whole file, read once: the bytes that are checked are the bytes the engine is given."""
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    data = p.read_bytes()
    if not data:
        raise InvalidModelError(f"{p}: file is empty (0 bytes)")
    return data


def embedded_records(data: bytes, container: str, source: str) -> dict[str, bytes | str]:
    """The named metadata entries of a model's bytes (TFLite metadata buffers or ONNX ``metadata_props``),
    after the structural check of its container."""
    if container == "tflite":
        return dict(inspect_tflite(data, source).metadata)
    return dict(read_onnx_metadata(data, source))


def inspect_tflite_file(path: str | os.PathLike) -> TFLiteModelInfo:
    """Verify and describe a .tflite file on disk."""
    return inspect_tflite(read_model_bytes(path), str(path))


def read_metadata(path: str | os.PathLike) -> Metadata | None:
    """Read (and checksum-verify) the edgeclf record of a .tflite, .onnx or run folder; ``None`` if absent."""
    p = Path(path)
    if p.is_dir():
        mfile = p / "metadata.json"
        return Metadata.from_json(mfile.read_text()) if mfile.is_file() else None
    container = format_of(p).container
    data = read_model_bytes(p)
    raw = embedded_records(data, container, str(p)).get(METADATA_KEY)
    return parse_embedded(raw, str(p), verify_sealed(data, str(p)))


def _describe(meta: Metadata) -> str:
    return (f"{len(meta.labels)}-class image classifier ({meta.quantization}) made by edgeclf "
            f"{meta.edgeclf_version}" + (f" from {meta.source}" if meta.source else ""))


def write_metadata(path: str | os.PathLike, meta: Metadata, out: str | os.PathLike | None = None) -> Path:
    """Embed ``meta`` (sealed with a checksum) into the .tflite/.onnx at ``path``; write ``out`` atomically.

    A .tflite also gets the standard TFLite metadata with its label file packed after the flatbuffer, in the
    same re-pack, so the seal (computed last) covers the final bytes, zip tail included."""
    p = Path(path)
    container = format_of(p).container
    record = meta.replace(checksum=UNSEALED).to_json()
    data = read_model_bytes(p)
    if container == "tflite":
        standard, files = classifier_metadata(inspect_tflite(data, str(p)), meta.labels, meta.preprocess,
                                              "edgeclf image classifier", _describe(meta), str(p))
        data = embed_tflite_metadata(data, {METADATA_KEY: record.encode(), METADATA_NAME: standard}, str(p), files)
    else:
        data = embed_onnx_metadata(data, {METADATA_KEY: record}, str(p))
    return atomic_write_bytes(Path(out) if out is not None else p, seal(data))
