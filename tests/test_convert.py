"""edgeclf convert: every format and quantisation from models made without edgeclf, the parity gate, bad input."""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeclf.artifact import Metadata, Preprocess, read_metadata
from edgeclf.conversion.pipeline import convert, plan
from edgeclf.conversion.edgetpu import check_edgetpu_ready, parse_compiler_log
from edgeclf.conversion.tensorrt import engine_precision, trtexec_command
from edgeclf.errors import ConversionError, DataError, EdgeclfError, InvalidModelError, ModelNotFoundError
from edgeclf.training.keras_io import save_model
from edgeclf.artifact.formats import FORMATS, format_of, get_format
from edgeclf.artifact import inspect_tflite_file as inspect_tflite

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
SIZE = 32
LABELS = ["a", "b", "c", "d"]
NORM = {"mean": 127.5, "std": 127.5}
IMGS = 160  # half held out from int8 calibration: enough decisive images to show a flip rate below 5 %


def _cnn(keras, seed: int = 0):
    """A small CNN whose classes are decided by colour, so its top-1 is stable under quantisation."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(8, 3, strides=2)(inp)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(len(LABELS), activation="softmax")(x)
    model = keras.Model(inp, out)
    w, b = model.layers[-1].get_weights()
    model.layers[-1].set_weights([w * 300, b])  # decisive outputs: a random-init net is near-uniform
    return model


def _images(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([cv2.resize(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8), (SIZE + 8, SIZE + 8))
                     for _ in range(n)])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Models saved with plain tf-keras (.h5, .keras, SavedModel, a run folder) plus image folders."""
    import tf_keras as keras
    d = tmp_path_factory.mktemp("made")
    model = _cnn(keras)
    model.save(d / "cnn.h5")
    model.save(d / "cnn.keras")
    model.save(d / "cnn_savedmodel", save_format="tf")
    run = d / "run"
    run.mkdir()
    model.save(run / "model.keras")
    meta = Metadata(labels=LABELS, preprocess=Preprocess(input_size=(SIZE, SIZE), **NORM), output="probabilities",
                    source="cnn")
    (run / "metadata.json").write_text(meta.to_json())
    calib = np.stack([cv2.resize(im, (SIZE, SIZE)) for im in _images(80, 1)])
    np.savez(run / "calib.npz", images=calib, labels=np.zeros(len(calib), np.int64))
    imgs = d / "imgs"
    imgs.mkdir()
    for i, im in enumerate(_images(IMGS, 2)):
        cv2.imwrite(str(imgs / f"{i:02d}.png"), im)
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    (d / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return d


def test_formats_table_is_one_row_per_format_and_names_files():
    assert [f.name for f in FORMATS] == ["tflite", "onnx", "edgetpu", "tensorrt"]
    assert get_format("edgetpu").filename("m", "int8") == "m_int8_edgetpu.tflite"
    assert format_of("x/m_int8_edgetpu.tflite").name == "edgetpu"
    assert format_of("m_fp16_tensorrt.onnx").name == "tensorrt"
    assert format_of("m_fp32.onnx").name == "onnx"
    assert [(f.name, q) for f, q in plan("all", "fp16")] == [("tflite", "fp16"), ("onnx", "fp16"), ("tensorrt", "fp16")]


def test_every_format_and_quant_from_a_foreign_h5(made, tmp_path):
    out = tmp_path / "out"
    results = convert(made / "cnn.h5", to="all", quant="fp32,fp16,dynamic,int8", calib=made / "imgs",
                      labels=made / "labels.txt", out=out, verbose=False, **NORM)
    got = {(r.format, r.quant): r for r in results}
    assert set(got) == {("tflite", q) for q in ("fp32", "fp16", "dynamic", "int8")} | {
        ("onnx", "fp32"), ("onnx", "fp16"), ("onnx", "int8"), ("edgetpu", "int8"),
        ("tensorrt", "fp32"), ("tensorrt", "fp16"), ("tensorrt", "int8")}
    for (fmt, quant), r in got.items():
        assert r.path is not None and r.path.is_file() and r.parity is not None and r.parity.passed
        assert r.parity.images == IMGS // 2 and r.parity.image_source == "held-out calibration"  # undecodable skipped
        meta = read_metadata(r.path)
        assert meta.labels == LABELS and meta.quantization == quant
        assert meta.preprocess.mean == (127.5,) and meta.preprocess.input_size == (SIZE, SIZE)
        assert meta.extra["parity"]["status"] == "passed" and meta.extra["parity"]["flips"] == r.parity.flips
        assert r.parity.flips == 0 and r.parity.decisive >= 59 and r.parity.top5_overlap == 1.0
    assert got[("tflite", "fp32")].parity.max_abs_diff < 1e-4
    int8 = inspect_tflite(got[("tflite", "int8")].path)
    assert int8.inputs[0].dtype == "uint8" and int8.inputs[0].shape == (1, SIZE, SIZE, 3)
    assert int8.outputs[0].dtype == "uint8" and int8.inputs[0].scale
    etpu = got[("edgetpu", "int8")]
    assert etpu.path == got[("tflite", "int8")].path and "edgetpu_compiler not found" in etpu.notes[0]
    assert "converters/edgetpu_compile.sh" in etpu.notes[0]
    trt8 = got[("tensorrt", "int8")]  # no GPU or trtexec here: the command and the labels are what is checked
    assert trt8.extra["trtexec"][-2:] == ["--int8", "--fp16"] and b"QuantizeLinear" in trt8.path.read_bytes()
    assert read_metadata(trt8.path).extra["conversion"]["precision"] == "int8 (QDQ)"
    assert "engine" not in trt8.extra and not list(out.glob("*.calib")) and "trtexec not found" in trt8.notes[-1]
    assert read_metadata(got[("tensorrt", "fp16")].path).extra["conversion"]["precision"].startswith("fp16 (engine")
    import onnx
    fp16 = onnx.load(str(got[("onnx", "fp16")].path)).graph  # half-precision weights, float32 input and output
    kinds = {t.data_type for t in fp16.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert [v.type.tensor_type.elem_type for v in (*fp16.input, *fp16.output)] == [onnx.TensorProto.FLOAT] * 2
    report = json.loads((out / "convert_report.json").read_text())
    assert len(report["results"]) == len(results)
    for row in report["results"]:  # the OTA cost of every kept file, by coder
        data = Path(row["path"]).read_bytes()
        packed = row["compressed_bytes"]
        assert set(packed) == {"gzip", "zstd", "brotli"} and packed["gzip"] == len(gzip.compress(data, 9, mtime=0))
        assert all(0 < size < len(data) for size in packed.values())
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no scratch left behind


def test_run_folder_calibrates_from_its_calib_npz_and_runs_in_runtime(made, tmp_path):
    from edgeclf.runtime import Runtime
    (r,) = convert(made / "run", to="tflite", quant="int8", io="int8", out=tmp_path, verbose=False)
    assert r.path.name == "run_int8.tflite" and r.parity.images == 40 and r.parity.passed  # half of calib.npz
    assert r.parity.image_source == "held-out calib.npz"
    assert [n for n in r.notes if "MediaPipe Tasks: its int8 input is refused" in n and "--io uint8" in n]
    rt = Runtime(r.path)
    assert rt.labels == LABELS and rt.input_dtype == np.int8
    assert rt.predict(cv2.cvtColor(_images(1, 3)[0], cv2.COLOR_RGB2BGR), top_k=1)[0].label in LABELS


@pytest.mark.parametrize("name", ["cnn.keras", "cnn_savedmodel"])
def test_keras_and_savedmodel_without_images_check_on_random_images(made, tmp_path, name):
    # a SavedModel's graphs run on load: this one was made here, so it is trusted
    (r,) = convert(made / name, to="onnx", out=tmp_path, verbose=False, unsafe_load=name.endswith("savedmodel"))
    assert r.parity.passed and r.parity.image_source.startswith("random")
    assert read_metadata(r.path).preprocess.mean == (0.0,)  # no --mean given: raw 0..255 pixels


def test_float_io_int8_and_check_folder(made, tmp_path):
    (r,) = convert(made / "cnn.h5", to="tflite", quant="int8", io="float32", calib=made / "imgs", calib_samples=20,
                   check=made / "imgs", out=tmp_path, verbose=False, **NORM)
    info = inspect_tflite(r.path)
    assert info.inputs[0].dtype == "float32" and info.outputs[0].dtype == "float32"
    assert r.parity.images == IMGS and r.parity.image_source == "check (imgs)"
    with pytest.raises(ConversionError, match="Edge TPU needs full-integer"):
        convert(made / "cnn.h5", to="edgetpu", io="float32", calib=made / "imgs", out=tmp_path, verbose=False)
    with pytest.raises(ConversionError, match="full-integer input/output"):
        check_edgetpu_ready(r.path)


def test_qat_model_converts_from_learned_ranges(made, tmp_path):
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    qat = tfmot.quantization.keras.quantize_model(_cnn(keras))
    qat.compile("adam", "sparse_categorical_crossentropy")
    x = (_images(32, 4)[:, :SIZE, :SIZE].astype(np.float32) - 127.5) / 127.5
    qat.fit(x, qat.predict(x, verbose=0).argmax(-1), epochs=1, verbose=0)  # sets the learned activation ranges
    save_model(qat, tmp_path / "qat.keras")
    (r,) = convert(tmp_path / "qat.keras", to="tflite", quant="int8", check=made / "imgs", out=tmp_path / "o",
                   verbose=False, **NORM)  # no --calib: ranges come from training
    assert r.quant == "qat-int8" and r.parity.passed and read_metadata(r.path).quantization == "qat-int8"
    assert inspect_tflite(r.path).inputs[0].dtype == "uint8"


def test_failed_parity_leaves_no_file_unless_kept(made, tmp_path):
    out, few = tmp_path / "out", tmp_path / "few"  # 12 images: too few even to show numerical equivalence
    few.mkdir()
    for image in sorted((made / "imgs").rglob("*.png"))[:12]:
        shutil.copy(image, few / image.name)
    with pytest.raises(ConversionError, match=r"tflite fp32 could not be verified: only 0 of 12 check images are "
                                              r"decisive.*at least 1 decisive.*--check with more images.*nothing written") as exc:
        convert(made / "cnn.h5", to="tflite", out=out, max_flip_rate=0.999, margin=0.999, check=few,
                verbose=False, **NORM)
    assert [(r.kept, r.path) for r in exc.value.results] == [(False, None)]
    assert not list(out.glob("*.tflite")) and not [p for p in out.iterdir() if p.name.startswith(".")]
    with pytest.raises(ConversionError, match="kept as"):
        convert(made / "cnn.h5", to="tflite", out=out, max_flip_rate=0.999, margin=0.999, keep_failed=True,
                check=few, verbose=False, **NORM)
    assert read_metadata(out / "cnn_fp32.tflite").extra["parity"]["status"] == "unverified"


def _cumprod(t):
    import tensorflow as tf
    return tf.math.cumprod(t, axis=1)  # an op TFLite has only as a TF Select (Flex) op


def test_unsupported_ops_need_allow_select_ops(tmp_path):
    import tf_keras as keras
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(_cumprod)(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inp, out).save(tmp_path / "flex", save_format="tf")
    with pytest.raises(ConversionError, match=r"TFLite builtins lack \(Cumprod\); pass --allow-select-ops") as exc:
        convert(tmp_path / "flex", to="tflite", out=tmp_path / "o", verbose=False, unsafe_load=True)  # made here
    assert "\n" not in str(exc.value)
    with pytest.raises(ConversionError, match="TF Select ops .*FlexCumprod.* cannot be verified"):
        convert(tmp_path / "flex", to="tflite", out=tmp_path / "o", allow_select_ops=True, verbose=False,
                unsafe_load=True)
    assert not list((tmp_path / "o").glob("*.tflite"))


def test_bad_inputs_give_one_clear_line(made, tmp_path):
    import tf_keras as keras
    dense = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3, activation="softmax")])
    dense.save(tmp_path / "dense.h5")
    seg = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Conv2D(2, 1)])
    seg.save(tmp_path / "seg.h5")
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.png").write_bytes(b"\x89PNG broken")
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    h5 = made / "cnn.h5"
    cases = [
        (dict(model=h5, to="coreml"), ConversionError, "unknown format 'coreml'; choose from tflite, onnx"),
        (dict(model=h5, quant="int4"), ConversionError, "unknown quantisation 'int4'"),
        (dict(model=h5, to="onnx", quant="dynamic"), ConversionError, "format onnx has no dynamic mode"),
        (dict(model=h5, batch=4), ConversionError, "--batch must be 1 or dynamic"),
        (dict(model=h5, to="edgetpu", batch="dynamic"), ConversionError, "Edge TPU files need batch 1"),
        (dict(model=h5, mean=(1.0, 2.0)), InvalidModelError, "mean/std need 1 or 3 values, got 2"),
        (dict(model=h5, std=(1.0, 2.0, 3.0), color="GRAY"), InvalidModelError, "GRAY input has 1 channel"),
        (dict(model=h5, io="int16"), ConversionError, "unknown --io 'int16'"),
        (dict(model=tmp_path / "nope.h5"), ModelNotFoundError, "nope.h5: no such file"),
        (dict(model=tmp_path / "garbage.h5"), InvalidModelError, "garbage.h5: not a Keras model: neither a zip .keras archive nor an HDF5"),
        (dict(model=tmp_path / "dense.h5"), InvalidModelError, r"dense.h5: not an image classifier: input shape \(None, 10\)"),
        (dict(model=tmp_path / "seg.h5"), InvalidModelError, r"seg.h5: not an image classifier: output shape"),
        (dict(model=h5, quant="int8"), DataError, "int8 conversion needs calibration images"),
        (dict(model=h5, quant="int8", calib=tmp_path / "empty"), DataError, "empty: no image files"),
        (dict(model=h5, quant="int8", calib=tmp_path / "junk"), DataError, "junk: none of the 1 image files could be decoded"),
        (dict(model=h5, labels=["x", "y"]), InvalidModelError, "model has 4 classes but 2 labels were given"),
    ]
    for kwargs, kind, message in cases:
        with pytest.raises(kind, match=message) as exc:
            convert(out=tmp_path / "o", verbose=False, **kwargs)
        assert "\n" not in str(exc.value), str(exc.value)
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())


def test_cli_convert_usage_and_errors(made, tmp_path):
    from edgeclf.cli import main
    runner = CliRunner()
    bad = runner.invoke(main, ["convert", str(made / "cnn.h5"), "--to", "bogus"])
    assert bad.exit_code == 2 and "'bogus' is not one of tflite, onnx, edgetpu, tensorrt, all" in bad.output
    err = runner.invoke(main, ["convert", str(made / "cnn.h5"), "--quant", "int8", "--out", str(tmp_path)])
    assert err.exit_code == 1
    assert err.output.strip().splitlines()[-1].startswith("edgeclf: error: ") and "--calib DIR" in err.output
    ok = runner.invoke(main, ["convert", str(made / "cnn.h5"), "--to", "tflite,onnx", "--quant", "int8", "--calib",
                              str(made / "imgs"), "--calib-samples", "16", "--check", str(made / "imgs"),
                              "--margin", "0.3", "--mean", "127.5", "--std", "127.5",
                              "--labels", str(made / "labels.txt"), "--out", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    assert "edgeclf convert" in ok.output and (tmp_path / "cnn_int8.tflite").is_file()
    parity = read_metadata(tmp_path / "cnn_int8.onnx").extra["parity"]
    assert parity["images"] == IMGS and parity["margin"] == 0.3 and parity["status"] == "passed"


def test_trtexec_command_builds_int8_from_qdq_and_reads_the_engine_precision():
    assert trtexec_command("m.onnx", "m.engine", "fp16") == [
        "trtexec", "--onnx=m.onnx", "--saveEngine=m.engine", "--memPoolSize=workspace:1024M", "--fp16"]
    assert trtexec_command("m.onnx", "m.engine", "int8")[-2:] == ["--int8", "--fp16"]  # scales from the QDQ nodes
    assert not [a for a in trtexec_command("m.onnx", "m.engine", "int8") if a.startswith("--calib")]
    assert "--fp16" not in trtexec_command("m.onnx", "m.engine", "fp32")
    with pytest.raises(ConversionError, match="precision must be"):
        trtexec_command("m.onnx", "m.engine", "bf16")
    log = "[I] === Build Options ===\n[I] Max batch: explicit batch\n[I] Precision: FP32+FP16+INT8\n[I] LayerPrecisions:"
    assert engine_precision(log) == "fp32+fp16+int8" and engine_precision("no options") is None


def test_dynamic_batch_files_answer_a_batch_like_single_calls_and_bench_measures_them(made, tmp_path):
    from edgeclf.benchmark.session import bench
    from edgeclf.runtime import Runtime
    results = convert(made / "cnn.h5", to="tflite,onnx", quant="fp32,int8", batch="dynamic", calib=made / "imgs",
                      calib_samples=16, out=tmp_path, verbose=False, max_flip_rate=1.0, **NORM)  # not a gate test
    assert all(r.parity.passed for r in results)
    for r in results:
        rt = Runtime(r.path)
        assert rt.input_spec.shape[0] == -1 and read_metadata(r.path).extra["conversion"]["batch"] == "dynamic"
        x = np.concatenate([rt.preprocess(im) for im in _images(4, 5)])
        batched = rt.infer(x)[0]
        single = np.concatenate([rt.infer(x[i:i + 1])[0] for i in range(4)])
        np.testing.assert_allclose(batched.astype(np.float32), single.astype(np.float32), atol=1e-5)
    (record,) = bench([tmp_path / "cnn_fp32.onnx"], runs=10, warmup=2, max_secs=5, batch=[1, 4], progress=False)
    at4 = {t["batch"]: t for t in record["throughput"]}[4]
    assert at4["images_per_s"] and at4["images_per_s"] > 0, record["throughput"]


def test_edgetpu_compiler_log_is_parsed_into_tpu_and_cpu_ops():
    log = """Edge TPU Compiler version 16.0.384591198
Started a compilation timeout timer of 180 seconds.

Model compiled successfully in 352 ms.

Input model: m_int8.tflite
Input size: 2.66MiB
Output model: m_int8_edgetpu.tflite
Output size: 2.93MiB
Number of Edge TPU subgraphs: 1
Total number of operations: 68
Operation log: m_int8_edgetpu.log

Operator                       Count      Status

ADD                            10         Mapped to Edge TPU
CONV_2D                        35         Mapped to Edge TPU
DEPTHWISE_CONV_2D              17         Mapped to Edge TPU
MEAN                           1          Mapped to Edge TPU
FULLY_CONNECTED                1          Mapped to Edge TPU
QUANTIZE                       2          Mapped to Edge TPU
SOFTMAX                        1          Operation is otherwise supported, but not mapped due to some unspecified limitation
DEQUANTIZE                     1          Operation is working on an unsupported data type
"""
    report = parse_compiler_log(log)
    assert report["compiler_version"] == "16.0.384591198" and report["total_ops"] == 68
    assert report["tpu_ops"] == 66 and report["cpu_ops"] == 2 and report["edgetpu_subgraphs"] == 1
    assert {o["op"] for o in report["ops"] if not o["on_tpu"]} == {"SOFTMAX", "DEQUANTIZE"}


def test_convert_module_and_formats_are_light_to_import():
    import subprocess
    import sys
    code = ("import sys, edgeclf.artifact.formats, edgeclf.conversion, edgeclf.cli.convert; "
            "bad = [m for m in ('tensorflow', 'tf_keras', 'tf2onnx', 'onnx') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr


def test_every_error_is_an_edgeclf_error():
    assert issubclass(ConversionError, EdgeclfError) and issubclass(DataError, EdgeclfError)


def test_pruned_qat_model_with_an_all_zero_channel_converts_without_loss(made, tmp_path):
    """Pruning can zero a whole output channel; its learned weight range is then [0, 0], which the int8
    converter must not turn into a bias it cannot represent (the channel's batch norm still adds one)."""
    import tf_keras as keras
    from edgeclf.training.optimize import quantize

    model = _cnn(keras)
    conv, bn = model.layers[1], model.layers[2]
    kernel, bias = conv.get_weights()
    kernel[..., 3] = 0.0  # what magnitude pruning does to a weak channel
    conv.set_weights([kernel, bias])
    gamma, beta, mean, var = bn.get_weights()
    beta[3] = 2.0  # the batch norm keeps the channel alive: a constant the int8 file must reproduce
    bn.set_weights([gamma, beta, mean, var])
    qat = quantize(model, preserve_sparsity=True)
    qat.compile("adam", "sparse_categorical_crossentropy")
    x = (_images(32, 4)[:, :SIZE, :SIZE].astype(np.float32) - 127.5) / 127.5
    qat.fit(x, qat.predict(x, verbose=0).argmax(-1), epochs=1, verbose=0)
    save_model(qat, tmp_path / "pqat.keras")
    (r,) = convert(tmp_path / "pqat.keras", to="tflite", quant="int8", check=made / "imgs", out=tmp_path / "o",
                   verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0, **NORM)
    # unfixed: agreement 0.17, max |dp| 0.49. The small net has near-ties, so agreement is bounded loosely and
    # the probability difference carries the check
    assert r.parity.agreement >= 0.8 and r.parity.max_abs_diff < 0.1, r.parity.summary()


def test_labelled_test_npz_gates_on_accuracy(made, tmp_path):
    import tf_keras as keras
    run = tmp_path / "run"
    shutil.copytree(made / "run", run)
    test = np.stack([cv2.resize(im, (SIZE, SIZE)) for im in _images(160, 5)])
    x = (test[..., ::-1].astype(np.float32)[..., ::-1] - 127.5) / 127.5
    labels = keras.models.load_model(run / "model.keras").predict(x, verbose=0).argmax(-1)
    labels[:8] = (labels[:8] + 1) % len(LABELS)  # the source is wrong on these: accuracy 0.95
    np.savez(run / "test.npz", images=test, labels=labels)
    (r,) = convert(run, to="tflite", quant="fp32", max_accuracy_drop=0.02, out=tmp_path / "o", verbose=False)
    p = r.parity
    assert p.image_source == "labelled test.npz" and p.labelled == 160 and p.source_accuracy == 0.95
    assert p.accuracy_drop == 0.0 and p.drop_bounds[1] <= 0.02 and p.passed and p.reason.startswith("accuracy drop")


def test_int8_fallback_search_keeps_the_fewest_worst_layers(made):
    from edgeclf.evaluation.parity import Limits, judge
    from edgeclf.conversion.repair import diagnose, fallback
    from edgeclf.training.keras_io import load_model
    pre = Preprocess(input_size=(SIZE, SIZE), **NORM)
    calib = np.stack([cv2.resize(im, (SIZE, SIZE)) for im in _images(8, 1)])
    dbg, report = diagnose(load_model(made / "cnn.h5"), (SIZE, SIZE, 3), calib, pre, calib[:4])
    assert report.layers and report.layers[0]["rmse_over_scale"] >= report.layers[-1]["rmse_over_scale"]
    ref = np.eye(4)[np.arange(40) % 4]

    def pretend(model: bytes):  # the file "passes" once three or more layers stay float
        good = len(dbg.options.denylisted_nodes) >= 3
        return judge(ref, ref if good else np.roll(ref, 1, 0), Limits(), "pretend")
    fallback(dbg, report, pretend)
    assert [a["float_layers"] for a in report.attempts] == [1, 2, 4, 3]  # doubling, then bisection
    assert report.kept_float == [row["tensor_name"] for row in report.layers[:3]] and report.parity.passed


def test_gate_statistics_and_bad_check_folders(made, tmp_path):
    from edgeclf.evaluation.parity import Limits, judge, needed, rate_bounds
    assert needed(0.10) == 29 and needed(0.05) == 59 and needed(0.01) == 299
    lo, hi = rate_bounds(0, 29)
    assert lo == 0 and hi < 0.1 < rate_bounds(0, 28)[1]
    ref = np.tile([[0.7, 0.2, 0.05, 0.05]], (20, 1))
    p = judge(ref[:19], ref[:19], Limits(), "x")
    assert p.status == "unverified" and "only 19 of 19 check images are decisive" in p.reason and "--check" in p.reason
    same = judge(ref, ref + np.array([[-0.009, 0.009, 0, 0]]), Limits(), "x")  # 20 images, none moves 0.01
    assert same.status == "passed" and "numerically equivalent" in same.reason
    assert judge(ref, ref + np.array([[-0.02, 0.02, 0, 0]]), Limits(), "x").status == "unverified"
    bad = judge(ref, ref[:, ::-1].copy(), Limits(), "x")
    assert bad.status == "failed" and bad.flips == 20 and bad.top5_overlap == 1.0 and bad.mean_kl > 0.5
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.png").write_bytes(b"\x89PNG broken")
    for kwargs, message in [(dict(check=tmp_path / "junk"), "none of the 1 image files could be decoded"),
                            (dict(mean=[1, 2]), "bad preprocessing option"),
                            (dict(int8_fallback="always"), "unknown int8_fallback")]:
        with pytest.raises(EdgeclfError, match=message) as exc:
            convert(made / "cnn.h5", out=tmp_path / "o", verbose=False, **kwargs)
        assert "\n" not in str(exc.value)
