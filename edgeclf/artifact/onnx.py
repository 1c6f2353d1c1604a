"""Read and write an ONNX model's ``metadata_props`` straight from the protobuf bytes.

An ONNX file is a serialised ``ModelProto``; its metadata is the repeated field 14 of ``StringStringEntryProto``
(key = 1, value = 2). Walking the wire format here keeps reading (on the device) and writing (after
conversion) free of the ``onnx`` package and of any inference engine, and it bounds-checks every length.
"""
from __future__ import annotations

from typing import Iterator

from edgeclf.errors import InvalidModelError

_METADATA_PROPS, _GRAPH = 14, 7
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _Corrupt(Exception):
    pass


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Corrupt(f"varint at {pos} runs past its message")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def _fields(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the message in ``data[start:end]``; for a
    length-delimited field the span is its payload, otherwise the encoded value."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(data, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Corrupt(f"field number 0 at {field_start}")
        if wire == _VARINT:
            _, nxt = _varint(data, pos, end)
        elif wire == _LEN:
            length, pos = _varint(data, pos, end)
            nxt = pos + length
        elif wire in (_I64, _I32):
            nxt = pos + (8 if wire == _I64 else 4)
        else:
            raise _Corrupt(f"unsupported wire type {wire} at {field_start}")
        if nxt > end:
            raise _Corrupt(f"field {number} at {field_start} runs past the end")
        yield number, wire, pos, nxt
        pos = nxt


def _entry(data: bytes, start: int, end: int) -> tuple[str, str]:
    key = value = ""
    for number, wire, a, b in _fields(data, start, end):
        if wire == _LEN and number in (1, 2):
            text = data[a:b].decode("utf-8")
            key, value = (text, value) if number == 1 else (key, text)
    return key, value


def _top_level(data: bytes, source: str) -> list[tuple[int, int, int, int, int]]:
    """Each top-level field as (number, wire, payload start, payload end, field start); checks it is ONNX."""
    if not data:
        raise InvalidModelError(f"{source}: file is empty (0 bytes)")
    if data[4:8] == b"TFL3":
        raise InvalidModelError(f"{source}: this is a TFLite model, not ONNX (rename it to .tflite)")
    out, starts = [], 0
    try:
        for number, wire, a, b in _fields(data, 0, len(data)):
            out.append((number, wire, a, b, starts))
            starts = b
    except _Corrupt as exc:
        raise InvalidModelError(f"{source}: corrupt or truncated ONNX model ({exc})") from None
    if not any(n == _GRAPH and w == _LEN for n, w, *_ in out):
        raise InvalidModelError(f"{source}: not an ONNX model (no graph in the protobuf)")
    return out


def read_onnx_metadata(data: bytes, source: str) -> dict[str, str]:
    """``metadata_props`` of the serialised model ``data`` as a dict (a later key wins, as in protobuf)."""
    props = {}
    try:
        for number, wire, a, b, _ in _top_level(data, source):
            if number == _METADATA_PROPS and wire == _LEN:
                key, value = _entry(data, a, b)
                props[key] = value
    except (_Corrupt, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{source}: corrupt ONNX metadata_props ({type(exc).__name__})") from None
    return props


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _length_delimited(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | _LEN) + _encode_varint(len(payload)) + payload


def embed_onnx_metadata(data: bytes, entries: dict[str, str], source: str = "model") -> bytes:
    """A copy of ``data`` with ``metadata_props`` keys set: same-named entries dropped, the new ones appended."""
    kept = bytearray()
    try:
        for number, wire, a, b, field_start in _top_level(data, source):
            if number == _METADATA_PROPS and wire == _LEN and _entry(data, a, b)[0] in entries:
                continue
            kept += data[field_start:b]
    except (_Corrupt, UnicodeDecodeError) as exc:
        raise InvalidModelError(f"{source}: corrupt ONNX metadata_props ({type(exc).__name__})") from None
    for key, value in entries.items():
        entry = _length_delimited(1, key.encode()) + _length_delimited(2, value.encode())
        kept += _length_delimited(_METADATA_PROPS, entry)
    return bytes(kept)
