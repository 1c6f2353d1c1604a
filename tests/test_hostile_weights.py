"""edgeclf.models.torch_weights against hostile and damaged .pth files: every refusal is one short WeightsError line,
made quickly and within a few MB, and the real EfficientNet-Lite0 weights still load.

The hostile files are written opcode by opcode (pickle) and header by header (zip) here, so no torch is needed.
The fuzz test's example count is EDGECLF_FUZZ_EXAMPLES (default 200) for longer runs on demand.
"""
from __future__ import annotations

import collections
import os
import pickle
import re
import struct
import time
import tracemalloc
import zipfile
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import edgeclf.models as models
from edgeclf.errors import EdgeclfError
from edgeclf.models import WeightsError
from edgeclf.models.efficientnet_lite import imagenet_weights_file
from edgeclf.models.torch_weights import BUDGET_SLACK, LEGACY_MAGIC, PICKLE_EXPANSION, read_state_dict

MB = 1 << 20
REFUSAL_MB = 8          # a refusal's peak traced memory, whatever the file claims
REFUSAL_SECONDS = 2.0
FUZZ_EXAMPLES = int(os.environ.get("EDGECLF_FUZZ_EXAMPLES", "200"))


# --- pickles written opcode by opcode ------------------------------------------------------------------------

def _str(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _int(i: int) -> bytes:
    if 0 <= i < 256:
        return b"K" + bytes([i])
    if -2**31 <= i < 2**31:
        return b"J" + struct.pack("<i", i)
    n = i.bit_length() // 8 + 1
    if n < 256:
        return b"\x8a" + bytes([n]) + i.to_bytes(n, "little", signed=True)  # LONG1
    return b"\x8b" + struct.pack("<i", n) + i.to_bytes(n, "little", signed=True)  # LONG4


def _global(module: str, name: str) -> bytes:
    return b"c" + f"{module}\n{name}\n".encode()


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


def _storage(key: str, numel: int, kind: str = "FloatStorage", legacy: bool = False) -> bytes:
    fields = [_str("storage"), _global("torch", kind), _str(key), _str("cpu"), _int(numel)]
    return _tuple(*fields, *([b"N"] if legacy else [])) + b"Q"  # BINPERSID


def _tensor(storage: bytes, offset: int, shape: tuple, stride: tuple) -> bytes:
    args = _tuple(storage, _int(offset), _tuple(*map(_int, shape)), _tuple(*map(_int, stride)), b"\x89",
                  _global("collections", "OrderedDict") + b")R")
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_dict(entries: dict[str, bytes]) -> bytes:
    """A protocol-2 pickle of an OrderedDict name -> (pickled value), as torch.save writes a state_dict."""
    items = b"".join(_str(k) + v for k, v in entries.items())
    return b"\x80\x02" + _global("collections", "OrderedDict") + b")R(" + items + b"u."


def _write(path: Path, pkl: bytes, storages: dict[str, bytes], legacy: bool,
           counts: dict[str, int] | None = None, itemsize: int = 4) -> Path:
    """``pkl`` and raw ``storages`` in torch's legacy stream or zip layout (the zip: stored, CRCs right)."""
    if legacy:
        head = b"".join(pickle.dumps(o, protocol=2) for o in
                        (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
        body = b"".join(struct.pack("<q", (counts or {}).get(k, len(v) // itemsize)) + v for k, v in storages.items())
        path.write_bytes(head + pkl + pickle.dumps(list(storages), protocol=2) + body)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pkl)
            zf.writestr("archive/byteorder", "little")
            for key, data in storages.items():
                zf.writestr(f"archive/data/{key}", data)
    return path


def _raw_zip(path: Path, members: list[tuple[str, int, bytes, int, int, int]], flags: int = 0) -> Path:
    """A zip written header by header: (name, method, bytes as stored, declared stored size, declared size, crc)
    per member, so declared sizes may lie and deflate streams may be bombs."""
    out, central = bytearray(), bytearray()
    for name, method, data, csize, size, crc in members:
        n = name.encode()
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, method, 0, 0, crc, csize, size,
                               len(n), 0, 0, 0, 0, 0, len(out)) + n
        out += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, method, 0, 0, crc, csize, size, len(n), 0)
        out += n + data
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(out), 0)
    path.write_bytes(bytes(out + central + eocd))
    return path


def _deflate_bomb(gib: int = 1) -> bytes:
    """A raw deflate stream of ``gib`` GiB of zeros, about 1 MB: one MiB-block compressed, then repeated."""
    zeros, c = bytes(MB), zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)  # the window was flushed: every further MiB is the same
    return first + block * (1024 * gib - 2) + c.compress(zeros) + c.flush()


GIB_OF_ZEROS_CRC = 0x5B64C2B0  # zlib.crc32(bytes(1 << 30)), so the bomb is a well-formed member


# --- how a refusal is checked ----------------------------------------------------------------------------------

def _refused(path: Path, match: str, mb: float = REFUSAL_MB) -> str:
    """read_state_dict(path) raises one short WeightsError line naming the file, quickly and within ``mb``."""
    tracemalloc.start()
    start = time.process_time()  # this process's CPU: what the refusal costs, whatever else the machine runs
    try:
        with pytest.raises(EdgeclfError) as info:
            read_state_dict(path)
        elapsed = time.process_time() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    msg = str(info.value)
    assert isinstance(info.value, WeightsError), f"{type(info.value).__name__}: {msg[:200]}"
    assert "\n" not in msg and len(msg) < 400 and path.name in msg, msg[:400]
    assert re.search(match, msg), msg
    assert peak < mb * MB, f"refusing took {peak / MB:.1f} MB"
    assert elapsed < REFUSAL_SECONDS, f"refusing took {elapsed:.2f} s of CPU"
    return msg


both_layouts = pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])


# --- a tiny valid file: the positive case and the fuzz test's seed ---------------------------------------------

WEIGHT = np.arange(48, dtype=np.float32).reshape(4, 3, 2, 2) / 7
TRACKED = np.array(12345, dtype=np.int64)


def _tiny(path: Path, legacy: bool) -> Path:
    """conv.weight (4, 3, 2, 2) stored channels-last, bn.num_batches_tracked an int64 scalar."""
    pkl = _state_dict({
        "conv.weight": _tensor(_storage("0", 48, legacy=legacy), 0, (4, 3, 2, 2), (12, 1, 6, 3)),
        "bn.num_batches_tracked": _tensor(_storage("1", 1, "LongStorage", legacy=legacy), 0, (), ()),
    })
    storages = {"0": WEIGHT.transpose(0, 2, 3, 1).tobytes(), "1": TRACKED.tobytes()}
    return _write(path, pkl, storages, legacy, counts={"0": 48, "1": 1})


@both_layouts
def test_tiny_hand_made_file_reads_back_exactly(tmp_path, legacy):
    back = read_state_dict(_tiny(tmp_path / "tiny.pth", legacy))
    assert list(back) == ["conv.weight", "bn.num_batches_tracked"]
    np.testing.assert_array_equal(back["conv.weight"], WEIGHT)
    assert back["conv.weight"].flags["C_CONTIGUOUS"] and back["conv.weight"].dtype == np.float32
    assert back["bn.num_batches_tracked"].shape == () and back["bn.num_batches_tracked"] == TRACKED


@both_layouts
def test_dense_layouts_real_state_dicts_use_are_read(tmp_path, legacy):
    """Offsets into a shared storage, size-1 dims with any stride, empty tensors: all dense, all accepted."""
    data = np.arange(20, dtype=np.float32)
    pkl = _state_dict({
        "a": _tensor(_storage("0", 20, legacy=legacy), 2, (3, 4), (4, 1)),        # offset, row-major
        "b": _tensor(_storage("0", 20, legacy=legacy), 14, (2, 1, 3), (1, 99, 2)),  # transposed, size-1 dim
        "c": _tensor(_storage("0", 20, legacy=legacy), 20, (0, 5), (5, 1)),       # empty, at the end
    })
    back = read_state_dict(_write(tmp_path / "dense.pth", pkl, {"0": data.tobytes()}, legacy))
    np.testing.assert_array_equal(back["a"], data[2:14].reshape(3, 4))
    np.testing.assert_array_equal(back["b"], data[14:20].reshape(3, 1, 2).transpose(2, 1, 0))
    assert back["c"].shape == (0, 5)


# --- strides, offsets and sizes that would make the reader expand a storage ------------------------------------

@both_layouts
def test_zero_strides_cannot_expand_one_element_into_gigabytes(tmp_path, legacy):
    pkl = _state_dict({"w": _tensor(_storage("0", 1, legacy=legacy), 0, (100_000, 100_000), (0, 0))})
    path = _write(tmp_path / "broadcast.pth", pkl, {"0": np.float32(1).tobytes()}, legacy)
    _refused(path, r"tensor 'w' (has strides|reaches past)")


@pytest.mark.parametrize("shape, stride, what", [
    ((4000, 4000), (1, 1), r"not a dense layout"),        # overlapping: 16M elements out of 8000
    ((2000, 2), (2, 0), r"not a dense layout"),           # one axis broadcast
    ((50,), (2,), r"not a dense layout"),                  # gapped: a strided view, not a state_dict tensor
    ((3, 3), (3, 3), r"not a dense layout"),               # equal strides
])
@both_layouts
def test_overlapping_or_gapped_strides_are_refused(tmp_path, legacy, shape, stride, what):
    pkl = _state_dict({"w": _tensor(_storage("0", 8000, legacy=legacy), 0, shape, stride)})
    path = _write(tmp_path / "overlap.pth", pkl, {"0": bytes(4 * 8000)}, legacy)
    _refused(path, what)


@pytest.mark.parametrize("offset, shape, what", [
    (10, (4,), r"reaches past the end of its storage"),            # offset beyond the storage
    (0, (5,), r"reaches past the end of its storage"),             # one element too many
    (5, (0,), r"reaches past the end of its storage"),             # even an empty tensor's offset must be inside
    (2**62, (1,), r"reaches past the end of its storage"),         # far beyond, still a sane integer
    (2**70, (1,), r"not an integer in 0\.\.2\*\*62"),              # beyond int64
    (10**6000, (1,), r"opcode LONG4"),                             # too many digits to even print
    (-1, (1,), r"not an integer in 0\.\.2\*\*62"),
], ids=["beyond", "too-long", "empty-beyond", "2**62", "2**70", "10**6000", "negative"])
@both_layouts
def test_offsets_and_sizes_outside_the_storage_are_refused(tmp_path, legacy, offset, shape, what):
    pkl = _state_dict({"w": _tensor(_storage("0", 4, legacy=legacy), offset, shape, (1,) * len(shape))})
    _refused(_write(tmp_path / "offset.pth", pkl, {"0": bytes(16)}, legacy), what)


@both_layouts
def test_many_views_of_one_storage_stay_within_the_memory_budget(tmp_path, legacy):
    """64 full views of a 1 MB storage would return 64 MB from a 1 MB file: past 4x the file's size."""
    n = MB // 4
    pkl = _state_dict({f"w{i}": _tensor(_storage("0", n, legacy=legacy), 0, (n,), (1,)) for i in range(64)})
    path = _write(tmp_path / "views.pth", pkl, {"0": bytes(MB)}, legacy)
    _refused(path, r"its tensors would need 67108864 bytes, past this file's budget", mb=3.5)


def test_legacy_storage_claiming_a_terabyte_is_refused_without_reading(tmp_path):
    pkl = _state_dict({"w": _tensor(_storage("0", 2**38, legacy=True), 0, (2**38,), (1,))})
    path = _write(tmp_path / "huge.pth", pkl, {"0": bytes(16)}, legacy=True, counts={"0": 2**38})
    _refused(path, r"truncated: storage '0' is shorter than declared")


def test_zip_storage_whose_size_disagrees_with_its_tensor_is_refused(tmp_path):
    pkl = _state_dict({"w": _tensor(_storage("0", 4), 0, (4,), (1,))})
    path = _write(tmp_path / "size.pth", pkl, {"0": bytes(20)}, legacy=False)
    _refused(path, r"holds 20 bytes, its tensor storage declared 16")


# --- zip bombs and damaged archives -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def bomb() -> bytes:
    return _deflate_bomb()


@pytest.mark.parametrize("target, numel, what", [
    ("archive/data/0", 2**28, r"would expand \d+ bytes to 1073741824 .*zip bomb"),       # sizes agree: ratio
    ("archive/data/0", 1, r"holds 1073741824 bytes, its tensor storage declared 4"),   # sizes disagree
    ("archive/data.pkl", 1, r"data\.pkl' would expand \d+ bytes to 1073741824 .*zip bomb"),
    ("archive/byteorder", 1, r"byteorder' declares 1073741824 bytes \(at most 16\)"),
])
def test_zip_bomb_is_refused_before_decompression(tmp_path, bomb, target, numel, what):
    pkl = _state_dict({"w": _tensor(_storage("0", numel), 0, (numel,), (1,))})
    members = {"archive/data.pkl": pkl, "archive/byteorder": b"little", "archive/data/0": bytes(4)}
    rows = [(name, zipfile.ZIP_DEFLATED, bomb, len(bomb), 1 << 30, GIB_OF_ZEROS_CRC) if name == target
            else (name, zipfile.ZIP_STORED, data, len(data), len(data), zlib.crc32(data))
            for name, data in members.items()]
    _refused(_raw_zip(tmp_path / "bomb.pth", rows), what)


def test_deflated_members_within_limits_are_still_read(tmp_path):
    path = _tiny(tmp_path / "deflated.pth", legacy=False)
    recompressed = tmp_path / "recompressed.pth"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(recompressed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    np.testing.assert_array_equal(read_state_dict(recompressed)["conv.weight"], WEIGHT)


@pytest.mark.parametrize("case, what", [
    ("encrypted", r"zip member 'archive/data.pkl' is encrypted"),
    ("bzip2", r"compression method 12 \(only stored or deflated"),
    ("stored-lies", r"stored zip member 'archive/data.pkl' declares \d+ bytes stored for 1073741824"),
    ("short", r"corrupt zip archive"),
])
def test_unreadable_zip_members_are_refused(tmp_path, case, what):
    pkl = _state_dict({})
    method = zipfile.ZIP_BZIP2 if case == "bzip2" else zipfile.ZIP_STORED
    size = 1 << 30 if case == "stored-lies" else len(pkl)
    data = pkl[:-3] if case == "short" else pkl  # "short": the member's bytes end before its declared size
    csize = size if case != "stored-lies" else len(pkl)
    _refused(_raw_zip(tmp_path / "member.pth", [("archive/data.pkl", method, data, csize, size, zlib.crc32(pkl))],
                      flags=1 if case == "encrypted" else 0), what)


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.99])
def test_truncated_zip_gives_one_clear_error(tmp_path, keep):
    whole = _tiny(tmp_path / "whole.pth", legacy=False).read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(whole[: int(len(whole) * keep)])
    _refused(path, r"cut\.pth: corrupt zip archive")


def test_damaged_zip_member_is_caught_by_its_crc(tmp_path):
    whole = bytearray(_tiny(tmp_path / "whole.pth", legacy=False).read_bytes())
    at = bytes(whole).index(WEIGHT.transpose(0, 2, 3, 1).tobytes()[:16])
    whole[at] ^= 0xFF
    path = tmp_path / "flipped.pth"
    path.write_bytes(bytes(whole))
    _refused(path, r"corrupt zip archive \(BadZipFile: Bad CRC-32")


# --- pickles that would blow up the unpickler or an error message --------------------------------------------

def _nested_list(depth: int) -> bytes:
    return b"]" * depth + b"a" * (depth - 1)


def _laughs(levels: int) -> bytes:
    """(x, x) of (x, x) of ... of [] through the memo: 11 bytes a level, 2**levels leaves when walked."""
    out = b"]r" + struct.pack("<I", 0)
    for i in range(1, levels + 1):
        out += b"j" + struct.pack("<I", i - 1) + b"\x86r" + struct.pack("<I", i)  # BINGET, TUPLE2, LONG_BINPUT
    return out


def _persid(key: bytes, extra: bytes = b"") -> bytes:
    return b"(" + _str("storage") + _global("torch", "FloatStorage") + key + _str("cpu") + _int(1) + extra + b"tQ"


@pytest.mark.parametrize("case, what", [
    ("deep list as the state_dict", r"nested too deeply"),
    ("deep list as a shape", r"nested too deeply"),
    ("deep marks", r"more than 64 nested MARKs"),
    ("memo loop as a value", r"entry 'w' is a list, not a tensor"),
    ("memo loop as a shape", r"shape and stride are not two tuples"),
    ("laughs as a storage key", r"storage whose key is not a short string"),
    ("laughs in a long persistent id", r"persistent reference \(tuple\) that is not a tensor storage"),
    ("laughs as a dict key", r"dict key that is a tuple, not a string"),
    ("tuple chain", r"expected a state_dict .*found a tuple"),
])
@both_layouts
def test_nesting_and_memo_tricks_are_refused_briefly(tmp_path, legacy, case, what):
    """No RecursionError escapes, no error message grows with the structure, nothing exponential is walked."""
    tensor = _global("torch._utils", "_rebuild_tensor_v2")
    body = {
        "deep list as the state_dict": _nested_list(10_000),
        "deep list as a shape": tensor + b"(" + _persid(_str("0")) + _int(0) + _nested_list(10_000) + b")tR",
        "deep marks": b"(" * 1000 + b"t" * 1000,
        "memo loop as a value": _global("collections", "OrderedDict") + b")R" + _str("w") + b"]q\x00h\x00as",
        "memo loop as a shape": tensor + b"(" + _persid(_str("0")) + _int(0) + b"]q\x00h\x00a" + b"]tR",
        "laughs as a storage key": _persid(_laughs(22)),
        "laughs in a long persistent id": _persid(_str("0"), extra=_laughs(22) + b"N"),
        "laughs as a dict key": b"}" + _laughs(22) + b"Ns",
        "tuple chain": b"]" + b"\x85" * 10_000,
    }[case]
    pkl = b"\x80\x02" + body + b"."
    _refused(_write(tmp_path / "nested.pth", pkl, {"0": bytes(4)}, legacy), what)


def test_the_object_budget_caps_what_a_pickle_may_build(tmp_path):
    """A chain of 1-byte TUPLE1s builds a 48-byte tuple per byte; the pickle machine stops at 32x the pickle."""
    pkl = b"\x80\x02]" + b"\x85" * 50_000 + b"."
    cap = PICKLE_EXPANSION * len(pkl) + BUDGET_SLACK
    _refused(_write(tmp_path / "tuples.pth", pkl, {}, legacy=False), r"builds more objects than its size allows",
             mb=cap / MB + 1)


@pytest.mark.parametrize("module, name", [("os", "system"), ("posix", "system"), ("builtins", "eval"),
                                          ("builtins", "getattr"), ("torch", "load"),
                                          ("torch._utils", "_rebuild_parameter"), ("numpy", "frombuffer")])
@pytest.mark.parametrize("opcode", ["GLOBAL", "STACK_GLOBAL"])
def test_globals_beyond_tensors_are_refused_without_running(tmp_path, module, name, opcode):
    marker = tmp_path / "pwned"
    ref = _global(module, name) if opcode == "GLOBAL" else (b"\x8c" + bytes([len(module)]) + module.encode()
                                                            + b"\x8c" + bytes([len(name)]) + name.encode() + b"\x93")
    pkl = b"\x80\x04" + ref + _tuple(_str(f"touch {marker}")) + b"R."
    _refused(_write(tmp_path / "evil.pth", pkl, {}, legacy=False), rf"refused to load {module}\.{name}: ")
    assert not marker.exists()


@pytest.mark.parametrize("pkl, what", [
    (b"\x80\x02" + _global("collections", "OrderedDict") + _tuple(_str("x")) + b"R.", r"REDUCE calls a type"),
    (b"\x80\x02" + _global("torch", "FloatStorage") + b")R.", r"REDUCE calls a _StorageType"),
    (b"\x80\x02]" + _tuple(_str("storage")) + b"Q.", r"persistent reference \(tuple\)"),
    (b"\x80\x02]}b.", r"BUILD of a list"),
    (b"\x80\x02" + _str("a") + b"\x81.", r"opcode NEWOBJ \(0x81\)"),
    (b"\x80\x02" + b"S'x'\n.", r"opcode STRING"),
    (b"\x80\x02" + b"h\x07.", r"memo entry 7, which it never stored"),
    (b"\x80\x02" + b"a.", r"pops an empty stack"),
    (b"\x80\x02" + b"X\xff\xff\xff\x7f" + b"abc", r"truncated: a string runs past the end"),
    (b"\x80\x02" + b"J\x01", r"truncated: the pickle ends inside an opcode"),
    (b"\x80\x02" + b"N", r"truncated: the pickle ends without a STOP"),
], ids=["OrderedDict-args", "call-a-storage-type", "short-persid", "build-a-list", "NEWOBJ", "STRING", "bad-memo",
        "underflow", "long-string", "cut-opcode", "no-STOP"])
def test_malformed_pickles_are_refused_with_what_is_wrong(tmp_path, pkl, what):
    _refused(_write(tmp_path / "bad.pth", pkl, {}, legacy=False), what)


# --- the real weights --------------------------------------------------------------------------------------------

def _reference_decode(path: Path) -> dict[str, np.ndarray]:
    """The trusted pip-package file decoded by the standard unpickler with stand-ins: an independent reader."""
    kinds = {"FloatStorage": np.float32, "LongStorage": np.int64}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
                return lambda storage, offset, shape, stride, *_: (storage, offset, shape, stride)
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            assert module == "torch", (module, name)
            return kinds[name]

        def persistent_load(self, pid):
            return pid[2], pid[1]

    with open(path, "rb") as fh:
        assert [pickle.load(fh) for _ in range(2)] == [LEGACY_MAGIC, 1001] and pickle.load(fh)["little_endian"]
        state = Unpickler(fh).load()
        dtypes = {key: dtype for (key, dtype), *_ in state.values()}
        raw = {}
        for key in pickle.load(fh):
            count = struct.unpack("<q", fh.read(8))[0]
            raw[key] = np.frombuffer(fh.read(count * np.dtype(dtypes[key]).itemsize), dtypes[key])
    out = {}
    for name, ((key, _), offset, shape, stride) in state.items():  # many are stored HWIO (converted from TF)
        flat = raw[key][offset:]
        out[name] = np.lib.stride_tricks.as_strided(flat, shape, tuple(s * flat.itemsize for s in stride))
    return out


def test_real_efficientnet_lite0_weights_load_exactly_fast_and_within_budget():
    path = imagenet_weights_file(models.spec("efficientnet_lite0"))
    size = path.stat().st_size
    times = []
    for _ in range(3):
        start = time.perf_counter()
        state = read_state_dict(path)
        times.append(time.perf_counter() - start)
    assert min(times) < 1.0, times  # ~25 ms on a laptop-class CPU
    reference = _reference_decode(path)
    assert list(state) == list(reference) and len(state) == 296
    for name, array in reference.items():
        assert state[name].dtype == array.dtype and state[name].flags["C_CONTIGUOUS"], name
        np.testing.assert_array_equal(state[name], array, err_msg=name)
    tracemalloc.start()
    try:
        read_state_dict(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * size, f"{peak / size:.2f}x the file's size"  # the file once, its tensors once


# --- fuzzing: mutated tiny files give a state_dict or a WeightsError, nothing else ------------------------------

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is in the dev extra
    given = None


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("seeds")
    with zipfile.ZipFile(_tiny(d / "zip.pth", legacy=False)) as zf:
        pkl = zf.read("archive/data.pkl")
    return {"legacy": _tiny(d / "legacy.pth", legacy=True).read_bytes(),
            "zip": (d / "zip.pth").read_bytes(), "zip-pickle": pkl, "dir": d}


def _mutate(data: bytes, flips: list[tuple[int, int]], insert: tuple[int, bytes] | None, cut: int | None) -> bytes:
    b = bytearray(data)
    for pos, xor in flips:
        b[pos % len(b)] ^= xor
    if insert is not None:
        at = insert[0] % (len(b) + 1)
        b[at:at] = insert[1]
    return bytes(b[:cut] if cut is not None else b)


if given is None:
    def test_mutated_files_give_a_state_dict_or_a_weights_error():
        pytest.skip("hypothesis is not installed (pip install -e .[dev])")
else:
    @settings(max_examples=FUZZ_EXAMPLES, deadline=timedelta(seconds=2), database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(kind=st.sampled_from(["legacy", "zip", "zip-pickle"]),
           flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(1, 255)), max_size=6),
           insert=st.none() | st.tuples(st.integers(0, 1 << 16), st.binary(min_size=1, max_size=12)),
           cut=st.none() | st.integers(0, 1 << 12))
    def test_mutated_files_give_a_state_dict_or_a_weights_error(seeds, kind, flips, insert, cut):
        path = seeds["dir"] / f"mutant-{kind}.pth"
        if kind == "zip-pickle":  # the pickle mutated inside a well-formed zip, so the CRC does not catch it first
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr("archive/data.pkl", _mutate(seeds[kind], flips, insert, cut))
                zf.writestr("archive/data/0", WEIGHT.transpose(0, 2, 3, 1).tobytes())
                zf.writestr("archive/data/1", TRACKED.tobytes())
        else:
            path.write_bytes(_mutate(seeds[kind], flips, insert, cut))
        tracemalloc.start()
        try:
            state = read_state_dict(path)
            assert isinstance(state, dict) and all(isinstance(v, np.ndarray) for v in state.values())
        except WeightsError as exc:
            msg = str(exc)
            assert "\n" not in msg and len(msg) < 400 and path.name in msg, msg[:400]
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
        assert peak < 4 * MB, f"{peak / MB:.1f} MB"
