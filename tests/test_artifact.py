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
    if kind == "onnx":
        pytest.importorskip("onnx", reason="writing ONNX metadata needs the onnx package (the [train] extra)")
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


def test_tflite_files_carry_the_standard_metadata_too_and_the_seal_covers_it(tmp_path, foreign_models):
    import io
    import zipfile

    from edgeclf.artifact.tflite import embed_tflite_metadata, inspect_tflite
    from edgeclf.artifact.tflite_standard import METADATA_NAME, read_standard_metadata
    from edgeclf.runtime import Runtime

    dst = write_metadata(foreign_models["float"], _meta(), tmp_path / "m.tflite")
    write_metadata(dst, _meta())  # rewriting replaces both records and the packed label file
    data = dst.read_bytes()
    with zipfile.ZipFile(io.BytesIO(data)) as packed:  # uncompressed, after the flatbuffer: MediaPipe reads it in place
        assert [(i.filename, i.compress_type) for i in packed.infolist()] == [("labels.txt", zipfile.ZIP_STORED)]
    assert data.count(b"PK\x05\x06") == 1 and verify_sealed(data, "m") == read_metadata(dst).checksum
    standard = read_standard_metadata(data, inspect_tflite(data).metadata[METADATA_NAME], "m")
    assert standard.labels == ["a", "b", "c", "d"] and standard.mean == (1.0, 2.0, 3.0) and standard.std == (4.0, 5.0, 6.0)
    assert standard.color is None  # BGR has no colour-space value: readers refuse rather than feed RGB
    rt = Runtime(dst)  # the edgeclf record wins
    assert rt.preprocess_spec.color == "BGR" and rt.preprocess_spec.resize == "letterbox"
    assert rt.describe()["has_tflite_metadata"] and rt.describe()["has_edgeclf_metadata"]
    # re-packing for another entry keeps the packed label file (and the seal then says the bytes changed)
    again = embed_tflite_metadata(data, {"other": b"x"})
    assert zipfile.ZipFile(io.BytesIO(again)).read("labels.txt") == b"a\nb\nc\nd\n"
    with pytest.raises(InvalidModelError, match="0 labels but the model outputs 4 classes"):
        write_metadata(foreign_models["float"], _meta().replace(labels=[]), tmp_path / "nolabels.tflite")


def _fake_edgetpu(src, dst):
    """A small int8 .tflite whose first operator is renamed to the Edge TPU compiler's custom op."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(src.read_bytes()), 0)
    code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode, code.deprecatedBuiltinCode, code.customCode = 32, 32, "edgetpu-custom-op"  # CUSTOM
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    dst.write_bytes(bytes(b.Output()))
    return dst


def test_info_describes_an_edgetpu_file_without_a_coral(tmp_path, foreign_models):
    from click.testing import CliRunner

    from edgeclf.cli import main
    from edgeclf.errors import InvalidModelError as Invalid
    from edgeclf.runtime import Runtime

    fake = write_metadata(_fake_edgetpu(foreign_models["uint8"], tmp_path / "raw_edgetpu.tflite"), _meta(),
                          tmp_path / "fake_edgetpu.tflite")
    with pytest.raises(Invalid, match="compiled for the Edge TPU"):
        Runtime(fake)
    out = CliRunner().invoke(main, ["info", str(fake)])
    assert out.exit_code == 0, out.output
    assert "compiled for the Edge TPU: run with --device coral" in out.output
    assert "input      " in out.output and "32, 32, 3] uint8 quant scale=" in out.output
    assert "labels     4: a, b, c, d" in out.output and "standard   TFLite metadata: 4 packed labels" in out.output
    assert "made by    edgeclf" in out.output
