"""The checksum sealed into every file edgeclf writes: a corrupted or edited copy is refused, not run.

The record's ``checksum`` field holds the sha256 of the whole file computed with that field zeroed, so the
seal can be checked from the raw bytes before any native parser sees them.
"""
from __future__ import annotations

import hashlib

from edgeclf.artifact.metadata import Metadata
from edgeclf.errors import InvalidModelError

CHECKSUM_FIELD = b'"checksum": "'
UNSEALED = "0" * 64


def _digest(data: bytes, start: int) -> str:
    h = hashlib.sha256()
    h.update(memoryview(data)[:start])
    h.update(UNSEALED.encode())
    h.update(memoryview(data)[start + 64:])
    return h.hexdigest()


def seal(data: bytes) -> bytes:
    """Fill the unsealed checksum of the embedded record with the sha256 of the whole file."""
    at = data.find(CHECKSUM_FIELD + UNSEALED.encode())
    if at < 0:
        raise InvalidModelError("model: edgeclf metadata checksum not found in the file")
    start = at + len(CHECKSUM_FIELD)
    return data[:start] + _digest(data, start).encode() + data[start + 64:]


def verify_sealed(data: bytes, source: str) -> str | None:
    """Check a file's bytes against the checksum sealed into its record, before any native code parses it.

    Returns the checksum, or ``None`` for a file edgeclf did not seal (a model made elsewhere); raises
    ``InvalidModelError`` when the bytes changed after sealing (bit rot, truncation, a bad copy).
    """
    at = data.find(CHECKSUM_FIELD)
    if at < 0:
        return None
    start = at + len(CHECKSUM_FIELD)
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
