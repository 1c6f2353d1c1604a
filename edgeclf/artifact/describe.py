"""What a model file is, from its bytes alone (no interpreter, no device): tensors, records, size, the device it
needs. ``edgeclf info`` uses it for files whose device is not on this machine (an Edge TPU-compiled .tflite)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeclf.artifact.files import embedded_records, read_model_bytes
from edgeclf.artifact.formats import format_of
from edgeclf.artifact.metadata import METADATA_KEY
from edgeclf.artifact.seal import parse_embedded, verify_sealed
from edgeclf.artifact.tflite import EDGETPU_OP, TensorInfo, inspect_tflite
from edgeclf.artifact.tflite_standard import METADATA_NAME, read_standard_metadata


def _tensor(t: TensorInfo) -> dict[str, Any]:
    """The fields ``Runtime.describe`` gives for a tensor (dynamic dimensions as -1)."""
    return {"name": t.name, "shape": list(t.shape_signature), "dtype": t.dtype,
            "scale": t.scale[0] if t.scale else 0.0, "zero_point": t.zero_point[0] if t.zero_point else 0}


def describe_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-able description of the file at ``path``, checked (seal, structure) but never run."""
    p = Path(path)
    data = read_model_bytes(p)
    container = format_of(p).container
    sealed = verify_sealed(data, str(p))
    records = embedded_records(data, container, str(p))
    meta = parse_embedded(records.get(METADATA_KEY), str(p), sealed)
    d: dict[str, Any] = {"model": str(p), "format": container, "size_bytes": len(data), "records": sorted(records),
                         "has_edgeclf_metadata": meta is not None, "has_tflite_metadata": METADATA_NAME in records,
                         "metadata": meta.to_dict() if meta is not None else None, "standard_metadata": None,
                         "inputs": [], "outputs": [], "needs_device": None}
    if container == "tflite":
        info = inspect_tflite(data, str(p))
        d |= {"inputs": [_tensor(t) for t in info.inputs], "outputs": [_tensor(t) for t in info.outputs],
              "needs_device": "coral" if EDGETPU_OP in info.custom_ops else None}
        raw = records.get(METADATA_NAME)
        standard = read_standard_metadata(data, raw, str(p)) if isinstance(raw, bytes) else None
        if standard is not None:
            d["standard_metadata"] = {"labels": len(standard.labels), "mean": standard.mean, "std": standard.std,
                                      "color": standard.color}
    return d
