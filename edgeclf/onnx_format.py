"""Read and write the edgeclf record of an ONNX model's ``metadata_props``.

Reading uses onnxruntime (present wherever an .onnx is run); writing needs the ``onnx`` package
(the ``[train]`` extra), as only conversion writes ONNX files.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InvalidModelError, ModelNotFoundError


def check_onnx_bytes(path: str | os.PathLike) -> None:
    """Cheap checks before onnxruntime sees the file: exists, not empty, not a TFLite flatbuffer."""
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: no such file" if not p.exists() else f"{p}: is not a file")
    size = p.stat().st_size
    if size == 0:
        raise InvalidModelError(f"{p}: file is empty (0 bytes)")
    with open(p, "rb") as fh:
        head = fh.read(8)
    if head[4:8] == b"TFL3":
        raise InvalidModelError(f"{p}: this is a TFLite model, not ONNX (rename it to .tflite)")


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (via onnxruntime, or the onnx package if ORT is absent)."""
    check_onnx_bytes(path)
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf DecodeError and friends
            raise InvalidModelError(f"{path}: corrupt or truncated ONNX model ({type(exc).__name__})") from None
        return {p.key: p.value for p in model.metadata_props}
    from .backends import onnx_session
    sess = onnx_session(path, ["CPUExecutionProvider"], None)
    return dict(sess.get_modelmeta().custom_metadata_map)


def embed_onnx_metadata(data: bytes, entries: dict[str, str], source: str = "model") -> bytes:
    """Return a copy of the serialised ONNX ``data`` with ``metadata_props`` keys set."""
    try:
        import onnx
    except ImportError:
        raise InvalidModelError("writing ONNX metadata needs the onnx package (pip install 'edgeclf[train]')") from None
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:
        raise InvalidModelError(f"{source}: corrupt or truncated ONNX model ({type(exc).__name__})") from None
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in entries.items():
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()
