"""The artifact contract: metadata round-trips inside .tflite and .onnx, sealed, atomic, readable without TF."""
from __future__ import annotations

import json
import os
import time

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


def _shared_vector_model(refs: int, length: int, shared: str) -> bytes:
    """A TFLite flatbuffer whose ``refs`` operators (or tensors) all point at one ``length``-element vector."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    b = flatbuffers.Builder(1024)

    def vector(start, values, prepend):
        start(b, len(values))
        for v in reversed(values):
            prepend(v)
        return b.EndVector()

    big = vector(s.OperatorStartInputsVector, [0] * length, b.PrependInt32)
    small = vector(s.TensorStartShapeVector, [1], b.PrependInt32)
    s.TensorStart(b)
    s.TensorAddShape(b, big if shared == "tensor" else small)
    tensor = s.TensorEnd(b)
    s.OperatorStart(b)
    s.OperatorAddInputs(b, big)
    op = s.OperatorEnd(b)
    tensors = vector(s.SubGraphStartTensorsVector, [tensor] * (refs if shared == "tensor" else 1), b.PrependUOffsetTRelative)
    ops = vector(s.SubGraphStartOperatorsVector, [op] * (refs if shared == "operator" else 0), b.PrependUOffsetTRelative)
    io = vector(s.SubGraphStartInputsVector, [0], b.PrependInt32)
    s.SubGraphStart(b)
    s.SubGraphAddTensors(b, tensors)
    s.SubGraphAddOperators(b, ops)
    s.SubGraphAddInputs(b, io)
    s.SubGraphAddOutputs(b, io)
    subgraphs = vector(s.ModelStartSubgraphsVector, [s.SubGraphEnd(b)], b.PrependUOffsetTRelative)
    s.OperatorCodeStart(b)
    opcodes = vector(s.ModelStartOperatorCodesVector, [s.OperatorCodeEnd(b)], b.PrependUOffsetTRelative)
    s.BufferStart(b)
    buffers = vector(s.ModelStartBuffersVector, [s.BufferEnd(b)], b.PrependUOffsetTRelative)
    s.ModelStart(b)
    s.ModelAddVersion(b, 3)
    s.ModelAddSubgraphs(b, subgraphs)
    s.ModelAddOperatorCodes(b, opcodes)
    s.ModelAddBuffers(b, buffers)
    b.Finish(s.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("shared, why", [("operator", "steps per byte"), ("tensor", "bad tensor shape")])
def test_shared_vectors_cannot_multiply_the_check(shared, why):
    """10 000 references to one 5 000-element vector: 50 million reads unchecked, refused within the budget."""
    from edgeclf.artifact.tflite import inspect_tflite

    assert inspect_tflite(_shared_vector_model(10, 10, shared), "small.tflite").num_ops == (10 if shared == "operator" else 0)
    data = _shared_vector_model(10_000, 5_000, shared)
    start = time.process_time()  # CPU of this process: the check's own cost, not the machine's load
    with pytest.raises(InvalidModelError, match=f"crafted.tflite: corrupt or truncated TFLite model.*{why}"):
        inspect_tflite(data, "crafted.tflite")
    assert time.process_time() - start < 0.5


def _repacked(path, change) -> bytes:
    """The .tflite at ``path`` with ``change`` applied to its object-API model."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT.InitFromPackedBuf(bytearray(path.read_bytes()), 0)
    change(model)
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


@pytest.mark.parametrize("dims, why", [((1, 7, 7, 9109520), "bad tensor shape"), ((5177345, 7, 7, 16), "needs over 1024 MiB")])
def test_a_declared_shape_the_interpreter_would_allocate_is_bounded(foreign_models, dims, why):
    """Found by benchmarks/fuzz.py: one flipped dimension made the interpreter allocate gigabytes for minutes."""
    from edgeclf.artifact.tflite import inspect_tflite

    def grow(model):
        next(t for t in model.subgraphs[0].tensors if list(t.shape) == [1, 7, 7, 16]).shape = np.array(dims, np.int32)
    with pytest.raises(InvalidModelError, match=why):
        inspect_tflite(_repacked(foreign_models["float"], grow), "m.tflite")


def test_an_operator_code_disagreeing_with_its_deprecated_field_is_refused(foreign_models):
    """Found by benchmarks/fuzz.py: the interpreter takes the larger code, so one flipped byte turned a CONV_2D
    into a SPLIT fed the convolution's tensors and options, which crashed the process."""
    from edgeclf.artifact.tflite import inspect_tflite

    def split(model):
        conv = next(oc for oc in model.operatorCodes if oc.builtinCode == 3)
        conv.deprecatedBuiltinCode = 49
    with pytest.raises(InvalidModelError, match="operator code 3 disagrees with its deprecated code 49"):
        inspect_tflite(_repacked(foreign_models["float"], split), "m.tflite")
