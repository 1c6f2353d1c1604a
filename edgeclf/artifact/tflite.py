"""Read, verify and re-write TFLite flatbuffers without TensorFlow.

The reader is a small bounds-checked walk over the parts of the TFLite schema that the interpreter
trusts (tables, vectors, tensor/buffer/opcode indices, constant buffer sizes). Every model goes through
it before native code sees the file, so a truncated or corrupt file becomes an ``InvalidModelError``
instead of a crashed interpreter. Writing metadata uses the generated object API that ships with
``ai_edge_litert`` on top of the ``flatbuffers`` package.
"""
from __future__ import annotations

import io
import logging
import struct
import zipfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeclf.errors import InvalidModelError

log = logging.getLogger("edgeclf")
IDENTIFIER = b"TFL3"
EDGETPU_OP = "edgetpu-custom-op"  # the custom op edgetpu_compiler puts the TPU part of a model in

# TensorType enum -> (name, bytes per element); 0 bytes = variable size (string, resource, variant, int4 packed)
TENSOR_TYPES = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1), 4: ("int64", 8),
    5: ("string", 0), 6: ("bool", 1), 7: ("int16", 2), 8: ("complex64", 8), 9: ("int8", 1),
    10: ("float64", 8), 11: ("complex128", 16), 12: ("uint64", 8), 13: ("resource", 0),
    14: ("variant", 0), 15: ("uint32", 4), 16: ("uint16", 2), 17: ("int4", 0), 18: ("bfloat16", 2),
    19: ("int2", 0), 20: ("uint4", 0),
}


# Work budget of one check, in table visits plus vector elements: a file read once needs about its size; shared
# tables and vectors (many operators pointing at one huge index vector) could otherwise multiply it without bound
# (a table visit costs Python about as much as TABLE_STEPS vector elements; a file's tables are at least 8 bytes)
WORK_PER_BYTE = 16
WORK_BASE = 100_000
TABLE_STEPS = 16
MAX_RANK = 16
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127  # an operator code's deprecated 8-bit field for codes above 127
# the interpreter allocates every tensor at its declared shape: no edge image classifier needs one this large
MAX_TENSOR_BYTES = 1 << 30


class CorruptFlatbuffer(Exception):
    pass


class FlatBuf:
    """Bounds-checked flatbuffer primitives over a bytes object, within a work budget proportional to its size."""

    def __init__(self, data: bytes) -> None:
        self.d = data
        self.n = len(data)
        self.budget = WORK_PER_BYTE * self.n + WORK_BASE

    def _spend(self, steps: int) -> None:
        self.budget -= steps
        if self.budget < 0:
            raise CorruptFlatbuffer(f"checking it takes over {WORK_PER_BYTE} steps per byte (shared tables or vectors)")

    def _need(self, pos: int, size: int) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise CorruptFlatbuffer(f"offset {pos}+{size} outside the file ({self.n} bytes)")

    def u8(self, pos: int) -> int:
        self._need(pos, 1)
        return self.d[pos]

    def u16(self, pos: int) -> int:
        self._need(pos, 2)
        return struct.unpack_from("<H", self.d, pos)[0]

    def i32(self, pos: int) -> int:
        self._need(pos, 4)
        return struct.unpack_from("<i", self.d, pos)[0]

    def u32(self, pos: int) -> int:
        self._need(pos, 4)
        return struct.unpack_from("<I", self.d, pos)[0]

    def u64(self, pos: int) -> int:
        self._need(pos, 8)
        return struct.unpack_from("<Q", self.d, pos)[0]

    def table(self, pos: int) -> "FlatTable":
        self._spend(TABLE_STEPS)
        vt = pos - self.i32(pos)
        vsize, tsize = self.u16(vt), self.u16(vt + 2)
        if vsize < 4 or vsize % 2:
            raise CorruptFlatbuffer(f"bad vtable at {vt}")
        self._need(vt, vsize)
        self._need(pos, max(tsize, 4))
        return FlatTable(self, pos, vt, vsize, tsize)

    def deref(self, pos: int) -> int:
        return pos + self.u32(pos)

    def vector(self, pos: int, elem: int) -> tuple[int, int]:
        """Return (start, length) of the vector at ``pos`` with ``elem``-byte elements, bounds-checked."""
        length = self.u32(pos)
        self._need(pos + 4, length * elem)  # so its length is capped by the bytes left in the file
        self._spend(length)
        return pos + 4, length


@dataclass
class FlatTable:
    b: FlatBuf
    pos: int
    vt: int
    vsize: int
    tsize: int

    def field(self, idx: int) -> int:
        """Absolute position of field ``idx`` or 0 when absent."""
        off_pos = 4 + 2 * idx
        if off_pos + 2 > self.vsize:
            return 0
        off = self.b.u16(self.vt + off_pos)
        if off == 0:
            return 0
        if off >= self.tsize:
            raise CorruptFlatbuffer(f"field {idx} outside its table at {self.pos}")
        return self.pos + off

    def scalar(self, idx: int, fmt: str, default: int = 0) -> int:
        p = self.field(idx)
        if not p:
            return default
        size = struct.calcsize("<" + fmt)
        self.b._need(p, size)
        return struct.unpack_from("<" + fmt, self.b.d, p)[0]

    def ref(self, idx: int) -> int:
        p = self.field(idx)
        return self.b.deref(p) if p else 0

    def array(self, idx: int, fmt: str = "i") -> np.ndarray:
        """A vector of numbers as a read-only view of the file (no per-element Python work)."""
        p = self.ref(idx)
        dtype = np.dtype("<" + fmt)
        if not p:
            return np.empty(0, dtype)
        start, n = self.b.vector(p, dtype.itemsize)
        return np.frombuffer(self.b.d, dtype, n, start)

    def ints(self, idx: int, fmt: str = "i") -> list[int]:
        return self.array(idx, fmt).tolist()

    def string(self, idx: int) -> str | None:
        p = self.ref(idx)
        if not p:
            return None
        start, n = self.b.vector(p, 1)
        try:
            return self.b.d[start:start + n].decode("utf-8")
        except UnicodeDecodeError:
            raise CorruptFlatbuffer(f"string at {p} is not UTF-8") from None

    def bytes_span(self, idx: int) -> tuple[int, int]:
        p = self.ref(idx)
        return self.b.vector(p, 1) if p else (0, 0)

    def tables(self, idx: int) -> list["FlatTable"]:
        p = self.ref(idx)
        if not p:
            return []
        start, n = self.b.vector(p, 4)
        return [self.b.table(self.b.deref(start + 4 * i)) for i in range(n)]


@dataclass
class TensorInfo:
    """One tensor of a TFLite subgraph, as the file describes it."""

    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    dtype: str
    buffer: int
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()


@dataclass
class TFLiteModelInfo:
    """What edgeclf needs to know about a .tflite file before handing it to an interpreter."""

    version: int
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    custom_ops: list[str]
    num_ops: int
    metadata: dict[str, bytes] = field(default_factory=dict)
    softmax_output: bool = False  # the first output comes from SOFTMAX (through any (de)quantise ops)


_ZP_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (0, 0), "int4": (-8, 7)}


def _quantization(q: FlatTable, dtype: str, shape: tuple[int, ...]) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Scales and zero points, rejecting values the kernels would trust blindly (NaN, <=0, out of range)."""
    scale, zp = tuple(q.ints(2, "f")), tuple(q.ints(3, "q"))
    if not scale and not zp:
        return scale, zp
    if len(zp) != len(scale):
        raise CorruptFlatbuffer(f"{len(scale)} quantisation scales but {len(zp)} zero points")
    if not all(np.isfinite(s) and s > 0 for s in scale):
        raise CorruptFlatbuffer("quantisation scale is not a positive finite number")
    lo, hi = _ZP_RANGE.get(dtype, (-(2 ** 31), 2 ** 31 - 1))
    if any(not lo <= z <= hi for z in zp):
        raise CorruptFlatbuffer(f"zero point outside the {dtype} range")
    qdim = q.scalar(6, "i")
    if len(scale) > 1 and (not 0 <= qdim < len(shape) or shape[qdim] != len(scale)):
        raise CorruptFlatbuffer("per-channel quantisation does not match the tensor shape")
    return scale, zp


_SOFTMAX, _PASS_THROUGH = "builtin:25", ("builtin:6", "builtin:114", "builtin:22")  # (de)quantize, reshape


def _produced_by_softmax(producers: dict[tuple[int, ...], tuple[str, list[int]]], tensor: list[int]) -> bool:
    """Whether ``tensor`` is a SOFTMAX output, looking back through dequantize/quantize/reshape ops."""
    for _ in range(4):
        name, inputs = producers.get(tuple(tensor), ("", []))
        if name == _SOFTMAX:
            return True
        if name not in _PASS_THROUGH or not inputs:
            return False
        tensor = inputs[:1]
    return False


def _parse(data: bytes, source: str) -> TFLiteModelInfo:
    if len(data) < 8:
        raise InvalidModelError(f"{source}: not a TFLite model (only {len(data)} bytes)")
    if data[4:8] != IDENTIFIER:
        hint = " (it looks like an ONNX/protobuf file)" if data[:1] == b"\x08" else ""
        raise InvalidModelError(f"{source}: not a TFLite model: missing the 'TFL3' identifier{hint}")
    b = FlatBuf(data)
    try:
        model = b.table(b.u32(0))
        version = model.scalar(0, "I")
        opcodes = model.tables(1)
        opnames: list[str] = []
        for oc in opcodes:
            custom = oc.string(1)
            deprecated, code = oc.scalar(0, "b"), oc.scalar(3, "i")
            if code and deprecated != min(code, _PLACEHOLDER_FOR_GREATER_OP_CODES):  # the schema's invariant
                raise CorruptFlatbuffer(f"operator code {code} disagrees with its deprecated code {deprecated}")
            code = max(deprecated, code)
            opnames.append(custom if custom is not None else f"builtin:{code}")
        buffers = model.tables(4)
        buf_sizes: list[int] = []
        for bt in buffers:
            start, n = bt.bytes_span(0)
            off, size = bt.scalar(1, "Q"), bt.scalar(2, "Q")
            if off > 1:  # data stored after the flatbuffer (large models)
                if off + size > len(data):
                    raise CorruptFlatbuffer("external buffer outside the file")
                n = size
            buf_sizes.append(n)
        subgraphs = model.tables(2)
        if not subgraphs:
            raise CorruptFlatbuffer("no subgraph")
        custom_ops: list[str] = []
        num_ops = 0
        main_io: tuple[list[TensorInfo], list[TensorInfo]] | None = None
        softmax_output = False
        for sg in subgraphs:
            tensors = sg.tables(0)
            infos = []
            for t in tensors:
                shape, sig = tuple(t.ints(0)), tuple(t.ints(7))
                if (len(shape) > MAX_RANK or any(d < -1 for d in shape + sig)
                        or sig and (len(sig) != len(shape) or any(s not in (-1, d) for s, d in zip(sig, shape)))):
                    raise CorruptFlatbuffer(f"bad tensor shape {shape[:MAX_RANK]} (signature {sig[:MAX_RANK]})")
                ttype = t.scalar(1, "b")
                if ttype not in TENSOR_TYPES:
                    raise CorruptFlatbuffer(f"unknown tensor type {ttype}")
                if int(np.prod(shape, dtype=np.float64)) * max(TENSOR_TYPES[ttype][1], 1) > MAX_TENSOR_BYTES:
                    raise CorruptFlatbuffer(f"tensor shape {shape} needs over {MAX_TENSOR_BYTES >> 20} MiB")
                bidx = t.scalar(2, "I")
                if bidx >= max(len(buffers), 1):
                    raise CorruptFlatbuffer(f"tensor buffer index {bidx} out of range")
                name, item = TENSOR_TYPES[ttype]
                if bidx < len(buf_sizes) and buf_sizes[bidx] and item and all(d >= 0 for d in shape):
                    need = int(np.prod(shape, dtype=np.int64)) * item
                    if buf_sizes[bidx] < need:
                        raise CorruptFlatbuffer(f"constant tensor needs {need} bytes, its buffer has {buf_sizes[bidx]}")
                scale: tuple[float, ...] = ()
                zp: tuple[int, ...] = ()
                qp = t.ref(4)
                if qp:
                    scale, zp = _quantization(b.table(qp), name, shape)
                infos.append(TensorInfo(t.string(3) or "", shape, sig or shape, name, bidx, scale, zp))
            nt = len(tensors)
            sg_in, sg_out = sg.ints(1), sg.ints(2)
            for i in sg_in + sg_out:
                if not 0 <= i < nt:
                    raise CorruptFlatbuffer(f"subgraph input/output index {i} out of range")
            producers: dict[tuple[int, ...], tuple[str, list[int]]] = {}
            for op in sg.tables(3):
                num_ops += 1
                oi = op.scalar(0, "I")
                if oi >= len(opcodes):
                    raise CorruptFlatbuffer(f"operator code index {oi} out of range")
                if not opnames[oi].startswith("builtin:"):
                    custom_ops.append(opnames[oi])
                op_in, op_out = op.array(1), op.array(2)
                indices = np.concatenate([op_in, op_out, op.array(6)])
                bad = indices[(indices < -1) | (indices >= nt)]
                if bad.size:
                    raise CorruptFlatbuffer(f"operator tensor index {bad[0]} out of range")
                producers[tuple(op_out[:1].tolist())] = (opnames[oi], op_in[:1].tolist())
                op.bytes_span(5)
                opt = op.ref(4)
                if opt:
                    b.table(opt)
            if main_io is None:
                main_io = ([infos[i] for i in sg_in], [infos[i] for i in sg_out])
                softmax_output = _produced_by_softmax(producers, sg_out[:1])
        metadata: dict[str, bytes] = {}
        for m in model.tables(6):
            name, bidx = m.string(0), m.scalar(1, "I")
            if name is None or bidx >= len(buffers):
                raise CorruptFlatbuffer("bad metadata entry")
            start, n = buffers[bidx].bytes_span(0)
            off, size = buffers[bidx].scalar(1, "Q"), buffers[bidx].scalar(2, "Q")
            metadata[name] = data[off:off + size] if off > 1 else data[start:start + n]
    except (CorruptFlatbuffer, struct.error, RecursionError) as exc:
        raise InvalidModelError(f"{source}: corrupt or truncated TFLite model ({exc})") from None
    assert main_io is not None
    if not main_io[0] or not main_io[1]:
        raise InvalidModelError(f"{source}: TFLite model has no inputs or no outputs")
    return TFLiteModelInfo(version, main_io[0], main_io[1], sorted(set(custom_ops)), num_ops, metadata, softmax_output)


def inspect_tflite(data: bytes, source: str = "model") -> TFLiteModelInfo:
    """Verify a .tflite file's bytes and describe them; raises ``InvalidModelError`` naming ``source`` when bad."""
    return _parse(data, source)


def _schema() -> Any:
    """The TFLite schema's generated object API, which ships with ai-edge-litert (used to re-pack a model)."""
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise InvalidModelError("writing TFLite metadata needs ai-edge-litert (pip install ai-edge-litert)") from None
    return schema


def packed_files(data: bytes) -> dict[str, bytes]:
    """The files packed in a model's zip tail (the TFLite metadata's label files); empty when it has none."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as packed:
            return {name: packed.read(name) for name in packed.namelist()}
    except Exception as exc:  # no tail (BadZipFile), or a damaged one (bad CRC, unknown method, zlib, EOF...)
        if b"PK\x05\x06" in data[-65558:]:
            log.warning("dropping the unreadable zip tail of a TFLite model (%s)", type(exc).__name__)
        return {}


def _append_zip(flatbuffer: bytes, files: dict[str, bytes]) -> bytes:
    """``flatbuffer`` followed by an uncompressed zip of ``files``, as tflite-support lays a model out (member
    offsets count from the start of the file; MediaPipe reads members in place and refuses compressed ones)."""
    if not files:
        return flatbuffer
    out = io.BytesIO(flatbuffer)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a") as zf:
        for name, payload in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # fixed date: repeatable bytes
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, payload)
    return out.getvalue()


def embed_tflite_metadata(data: bytes, entries: dict[str, bytes], source: str = "model",
                          files: dict[str, bytes] | None = None) -> bytes:
    """Return a copy of the .tflite ``data`` with named metadata buffers set (same-named ones replaced) and
    ``files`` packed after it (default: the files it already packs, so re-packing never loses label files)."""
    import flatbuffers

    _parse(data, source)
    files = packed_files(data) if files is None else files
    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    model.metadata = model.metadata or []
    model.buffers = model.buffers or []
    existing = {(m.name.decode() if isinstance(m.name, bytes) else m.name): m for m in model.metadata}
    for name, payload in entries.items():
        if name in existing:  # reuse its buffer, so the old payload does not linger in the file
            model.buffers[existing[name].buffer].data = np.frombuffer(payload, dtype=np.uint8)
            continue
        buf = schema.BufferT()
        buf.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buf)
        md = schema.MetadataT()
        md.name = name
        md.buffer = len(model.buffers) - 1
        model.metadata.append(md)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=IDENTIFIER)
    return _append_zip(bytes(builder.Output()), files)
