"""The artifact contract: metadata round-trips inside .tflite and .onnx, sealed, atomic, readable without TF."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from edgeclf.artifact import Metadata, Preprocess, read_labels, read_metadata, verify_sealed, write_metadata
from edgeclf.errors import InvalidModelError, ModelNotFoundError
from edgeclf.fileio import atomic_path


def _meta() -> Metadata:
    return Metadata(labels=["a", "b", "c", "d"], preprocess=Preprocess(input_size=(32, 32), layout="NHWC", color="BGR",
                    mean=(1.0, 2.0, 3.0), std=(4.0, 5.0, 6.0), resize="letterbox"), output="probabilities",
                    quantization="int8", source="unit", extra={"parity": {"agreement": 1.0}})


@pytest.mark.parametrize("kind", ["float", "uint8", "onnx"])
def test_metadata_round_trip(tmp_path, foreign_models, kind):
    src = foreign_models[kind]
    dst = tmp_path / src.name
    write_metadata(src, _meta(), dst)
    got = read_metadata(dst)
    volatile = ("checksum", "created")
    assert {k: v for k, v in got.to_dict().items() if k not in volatile} == \
        {k: v for k, v in _meta().to_dict().items() if k not in volatile}
    assert len(got.checksum) == 64 and verify_sealed(dst.read_bytes(), str(dst)) == got.checksum
    assert read_metadata(src) is None  # the source is untouched and has no record


def test_rewriting_metadata_replaces_it(tmp_path, foreign_models):
    dst = write_metadata(foreign_models["float"], _meta(), tmp_path / "m.tflite")
    write_metadata(dst, _meta().replace(labels=["w", "x", "y", "z"]))
    assert read_metadata(dst).labels == ["w", "x", "y", "z"]
    assert dst.read_bytes().count(b'"checksum"') == 1


def test_flipped_byte_is_caught_by_the_checksum(tmp_path, foreign_models):
    dst = write_metadata(foreign_models["int8"], _meta(), tmp_path / "m.tflite")
    data = bytearray(dst.read_bytes())
    data[len(data) // 3] ^= 0x01  # inside the weights: the interpreter would silently answer differently
    dst.write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="checksum mismatch"):
        read_metadata(dst)


def test_preprocess_validation_and_scale_offset():
    p = Preprocess.from_scale_offset(1 / 127.5, -1.0, input_size=(8, 8))
    assert p.mean == pytest.approx((127.5,)) and p.std == pytest.approx((127.5,))
    for bad in (dict(layout="NWHC"), dict(color="YUV"), dict(resize="zoom"), dict(std=0), dict(crop_ratio=1.5),
                dict(mean=(1, 2))):
        with pytest.raises(ValueError):
            Preprocess(**bad)


def test_unknown_keys_are_ignored_for_forward_compatibility():
    d = _meta().to_dict()
    d["future_field"] = 1
    d["preprocess"]["future_option"] = "x"
    assert Metadata.from_dict(d).labels == ["a", "b", "c", "d"]


def test_read_labels_formats(tmp_path):
    f = tmp_path / "labels.txt"
    f.write_text("0 tench\n1 goldfish\n\nbackground class\n")
    assert read_labels(f) == ["tench", "goldfish", "background class"]
    with pytest.raises(ModelNotFoundError):
        read_labels(tmp_path / "none.txt")


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert os.listdir(tmp_path) == []
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"whole")
    assert target.read_bytes() == b"whole" and os.listdir(tmp_path) == ["out.bin"]


def test_wrong_format_and_missing(tmp_path, foreign_models):
    with pytest.raises(ModelNotFoundError):
        read_metadata(tmp_path / "nope.tflite")
    bad = tmp_path / "model.pb"
    bad.write_bytes(b"x")
    with pytest.raises(InvalidModelError, match="unsupported model format"):
        read_metadata(bad)
    json.dumps(_meta().to_dict())  # JSON-able
    assert np.asarray(_meta().preprocess.input_size).tolist() == [32, 32]
