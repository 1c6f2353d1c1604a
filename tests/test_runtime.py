"""edgeclf.Runtime against the bare interpreters, on models made without edgeclf."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf import DeviceUnavailableError, ImageError, InvalidModelError, ModelNotFoundError, Runtime
from edgeclf.artifact import Preprocess
from edgeclf.runtime.devices import onnx_providers
from edgeclf.runtime.preprocess import InputEncoder, prepare

from conftest import CLASSES, SIZE

DATA = Path(__file__).parent / "data"
SUPPORT_LABELS = ["reddish", "greenish", "bluish", "grey"]


def _reference_input(img_bgr, dtype, scale, zp):
    """What the model should be fed, written out longhand from the resized RGB pixels: (x-127.5)/127.5, then
    quantise as TFLite's QUANTIZE op does (round half away from zero)."""
    rgb = prepare(img_bgr, Preprocess(input_size=(SIZE, SIZE), resize="stretch")).astype(np.float64)
    x = (rgb - 127.5) / 127.5
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        q = x / scale
        q = np.where(q >= 0, np.floor(q + 0.5), np.ceil(q - 0.5))
        x = np.clip(q + zp, info.min, info.max)
    return x.astype(dtype)[None]


def _raw_tflite(path, x):
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    out = it.get_output_details()[0]
    return it.get_tensor(out["index"]), out["quantization"]


def _raw_onnx(path, x):
    import onnxruntime as ort
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("kind", ["float", "uint8", "int8", "onnx"])
def test_runtime_equals_raw_interpreter(foreign_models, sample_images, kind):
    path = foreign_models[kind]
    rt = Runtime(path, labels=foreign_models["labels"], mean=127.5, std=127.5, resize="stretch")
    assert rt.labels == CLASSES and rt.input_size == (SIZE, SIZE) and rt.format == path.suffix[1:]
    for img in sample_images:
        ref = _reference_input(img, rt.input_dtype, rt.input_spec.scale, rt.input_spec.zero_point)
        assert np.array_equal(rt.preprocess(img), ref)
        if kind == "onnx":
            raw, probs = _raw_onnx(path, ref), None
            probs = raw[0]
        else:
            raw, (scale, zp) = _raw_tflite(path, ref)
            probs = (raw[0].astype(np.float32) - zp) * scale if scale else raw[0]
        assert np.array_equal(rt.infer(ref)[0], raw)
        np.testing.assert_allclose(rt.probabilities(img), probs, rtol=0, atol=1e-6)
        preds = rt.predict(img, top_k=3)
        assert [p.index for p in preds] == list(np.argsort(-probs, kind="stable")[:3])
        assert preds[0].label == CLASSES[preds[0].index] and preds[0].score >= preds[1].score


def test_embedded_metadata_is_used_and_arguments_override(tiny_tflite, sample_images):
    rt = Runtime(tiny_tflite)
    assert rt.labels == CLASSES and rt.metadata.preprocess.mean == (127.5,)
    assert rt.metadata.preprocess.resize == "stretch"
    over = Runtime(tiny_tflite, labels=["w", "x", "y", "z"], mean=0, std=255, color="BGR")
    assert over.labels == ["w", "x", "y", "z"]
    assert not np.array_equal(over.preprocess(sample_images[0]), rt.preprocess(sample_images[0]))
    assert over.metadata.preprocess.color == "BGR"


def test_defaults_for_a_model_without_metadata(foreign_models):
    rt = Runtime(foreign_models["float"])
    pre = rt.metadata.preprocess
    assert (pre.color, pre.resize, pre.crop_ratio, pre.mean, pre.std) == ("RGB", "crop", 0.875, (0.0,), (1.0,))
    assert rt.labels == ["0", "1", "2", "3"]


def test_image_inputs(tiny_tflite, tmp_path, sample_images):
    rt = Runtime(tiny_tflite)
    img = sample_images[2]
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), img)
    want = rt.probabilities(img)
    np.testing.assert_allclose(rt.probabilities(path), want)
    np.testing.assert_allclose(rt.probabilities(str(path)), want)
    bgra = cv2.cvtColor(img, cv2.COLOR_BGR2BGRA)
    np.testing.assert_allclose(rt.probabilities(bgra), want)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    assert rt.probabilities(gray).shape == (len(CLASSES),)
    assert rt.probabilities(gray[:, :, None]).shape == (len(CLASSES),)
    batch = rt.predict_batch([img, path, sample_images[0]], top_k=2)
    assert len(batch) == 3 and batch[0] == rt.predict(img, top_k=2)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    for bad, msg in [(tmp_path / "bad.jpg", "corrupt"), (tmp_path / "none.png", "not found"),
                     (img.astype(np.float32), "uint8"), (np.zeros((4, 4, 5), np.uint8), "shape"),
                     ([1, 2, 3], "numpy array")]:
        with pytest.raises(ImageError, match=msg):
            rt.predict(bad)
    with pytest.raises(ImageError, match="float32 tensor"):
        rt.infer(np.zeros((1, SIZE, SIZE, 3), np.uint8))
    with pytest.raises(ImageError, match="shape"):
        rt.infer(np.zeros((1, SIZE + 1, SIZE, 3), np.float32))


def test_resize_policies_match_their_longhand_definitions():
    yy, xx = np.mgrid[0:480, 0:640]
    img = np.dstack([(xx * 255 // 639), (yy * 255 // 479), ((xx + yy) * 255 // 1118)]).astype(np.uint8)
    # crop: short side to 224/0.875 = 256, then the centre 224x224
    got = prepare(img, Preprocess(input_size=(224, 224), resize="crop", crop_ratio=224 / 256, color="BGR"))
    ref = cv2.resize(img, (341, 256), interpolation=cv2.INTER_AREA)[16:240, 58:282]
    assert got.shape == (224, 224, 3) and np.abs(got.astype(int) - ref).mean() < 1.5
    # stretch, shrinking more than 2x (the two-step path)
    got = prepare(img, Preprocess(input_size=(60, 100), resize="stretch", color="BGR"))
    ref = cv2.resize(img, (100, 60), interpolation=cv2.INTER_AREA)
    assert got.shape == (60, 100, 3) and np.abs(got.astype(int) - ref).mean() < 1.5
    # letterbox: fit inside, pad top and bottom
    box = prepare(img, Preprocess(input_size=(100, 100), resize="letterbox", pad_value=0, color="BGR"))
    assert box.shape == (100, 100, 3) and box[:12].max() == 0 and box[88:].max() == 0 and box[50].max() > 0
    # colour orders
    rgb = prepare(img, Preprocess(input_size=(60, 100), resize="stretch", color="RGB"))
    gray = prepare(img, Preprocess(input_size=(60, 100), resize="stretch", color="GRAY"))
    bgr = prepare(img, Preprocess(input_size=(60, 100), resize="stretch", color="BGR"))
    assert np.array_equal(rgb, bgr[:, :, ::-1]) and gray.shape == (60, 100, 1)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("color", ["RGB", "BGR", "GRAY"])
@pytest.mark.parametrize("dtype,scale,zp", [(np.uint8, 1 / 127.5, 127), (np.int8, 0.0157, -3), (np.float32, 0, 0),
                                            (np.float16, 0, 0)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_encoder_matches_longhand_normalise_and_quantise(layout, color, dtype, scale, zp, per_channel):
    """Every pixel value, channel, layout and dtype; into a fresh tensor and into an engine's buffer alike."""
    c = 1 if color == "GRAY" else 3
    mean, std = ((123.7, 116.3, 103.5)[:c], (58.4, 57.1, 57.4)[:c]) if per_channel else ((127.5,), (127.5,))
    pre = Preprocess(input_size=(16, 16), color=color, layout=layout, mean=mean, std=std)
    prepared = np.arange(16 * 16 * c, dtype=np.uint8).reshape(16, 16, c)  # every value 0..255 in each channel
    prepared = np.roll(prepared, 7, axis=2) if c == 3 else prepared
    x = (prepared - np.asarray(mean)) / np.asarray(std)
    if np.dtype(dtype).kind in "iu":
        q = x / scale
        x = np.clip(np.where(q >= 0, np.floor(q + 0.5), np.ceil(q - 0.5)) + zp, np.iinfo(dtype).min, np.iinfo(dtype).max)
    ref = x.astype(dtype)
    ref = ref.transpose(2, 0, 1) if layout == "NCHW" else ref
    encoder = InputEncoder(pre, dtype, scale, zp)
    fresh = encoder(prepared)
    assert fresh.dtype == dtype and np.array_equal(fresh[0], ref)
    buffer = np.full((2, *ref.shape), 99, dtype)
    encoder.encode_into(prepared, buffer[0])
    assert np.array_equal(buffer[0], ref) and (buffer[1] == 99).all()
    # the camera path: a BGR image at the input size, colour step folded into the encoder
    bgr = {"RGB": prepared[:, :, ::-1], "BGR": prepared, "GRAY": np.repeat(prepared, 3, axis=2)}[color]
    buffer[0] = 99
    encoder.encode_bgr_into(np.ascontiguousarray(bgr), buffer[0])
    assert np.array_equal(buffer[0], ref) and (buffer[1] == 99).all()


@pytest.mark.parametrize("name", ["float_imagenet_norm", "uint8_quant"])
def test_tflite_standard_metadata_gives_labels_normalisation_and_colour(name, sample_images):
    """Models that Google's tflite-support MetadataWriter wrote (tests/data/make_tflite_support_models.py)."""
    path = DATA / f"tflite_support_{name}.tflite"
    rt = Runtime(path)
    assert rt.labels == SUPPORT_LABELS and rt.preprocess_spec.color == "RGB"
    for img in sample_images:
        rgb = prepare(img, rt.preprocess_spec)
        if rt.input_dtype == np.uint8:  # the Task Library's rule: a uint8 input takes the raw pixels
            ref = rgb
        else:  # the per-channel ImageNet normalisation written into the file (as float32)
            mean = np.array([123.675, 116.28, 103.53], np.float32).astype(np.float64)
            std = np.array([58.395, 57.12, 57.375], np.float32).astype(np.float64)
            ref = ((rgb - mean) / std).astype(np.float32)
        assert np.array_equal(rt.preprocess(img), ref[None])
        raw, (scale, zp) = _raw_tflite(path, ref[None])
        np.testing.assert_allclose(rt.probabilities(img), (raw[0].astype(np.float32) - zp) * scale if scale else raw[0],
                                   rtol=0, atol=1e-6)
    for bgr, label in [((0, 0, 255), "reddish"), ((0, 255, 0), "greenish"), ((255, 0, 0), "bluish")]:
        assert rt.predict(np.full((40, 40, 3), bgr, np.uint8), top_k=1)[0].label == label
    over = Runtime(path, labels=["a", "b", "c", "d"], mean=0, std=255, color="BGR")
    assert over.labels == ["a", "b", "c", "d"] and over.preprocess_spec.mean == (0.0,)
    assert over.preprocess_spec.color == "BGR"


def test_tflite_standard_metadata_with_a_damaged_label_file_is_refused(tmp_path):
    data = bytearray((DATA / "tflite_support_uint8_quant.tflite").read_bytes())
    at = data.rindex(b"greenish")  # inside the zip member: its CRC no longer matches
    data[at] ^= 0x20
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(bytes(data))
    with pytest.raises(InvalidModelError, match="label file 'labels.txt'"):
        Runtime(bad)


def test_pytorch_style_nchw_onnx_with_per_channel_normalisation(foreign_models, sample_images):
    """A PyTorch-shaped classifier: float [N,3,8,8] RGB in, 4 logits out (fixture_models.colour_classifier_onnx)."""
    path = foreign_models["nchw_onnx"]
    mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
    rt = Runtime(path, labels=SUPPORT_LABELS, mean=mean, std=std)
    assert rt.preprocess_spec.layout == "NCHW" and rt.input_size == (8, 8)
    for img in sample_images:
        ref = ((prepare(img, rt.preprocess_spec) - np.array(mean)) / np.array(std)).astype(np.float32)
        ref = ref.transpose(2, 0, 1)[None]
        assert np.array_equal(rt.preprocess(img), ref)
        logits = _raw_onnx(path, ref)[0]
        expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        np.testing.assert_allclose(rt.probabilities(img), expected, rtol=1e-5, atol=1e-6)
    for bgr, label in [((0, 0, 255), "reddish"), ((0, 255, 0), "greenish"), ((255, 0, 0), "bluish")]:
        assert rt.predict(np.full((40, 40, 3), bgr, np.uint8), top_k=1)[0].label == label


def test_label_count_mismatch_is_an_error(foreign_models, tmp_path):
    f = tmp_path / "three.txt"
    f.write_text("a\nb\nc\n")
    with pytest.raises(InvalidModelError, match="3 labels given but the model outputs 4"):
        Runtime(foreign_models["float"], labels=f)


@pytest.mark.parametrize("content,msg", [
    (None, "no such file"), (b"", "empty"), (b"\x00" * 3, "only 3 bytes"),
    (bytes(range(256)) * 8, "not a TFLite model"),
])
def test_bad_tflite_files(tmp_path, content, msg):
    p = tmp_path / "m.tflite"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises((InvalidModelError, ModelNotFoundError), match=msg):
        Runtime(p)


def test_wrong_format_files(tmp_path, foreign_models):
    onnx_as_tflite = tmp_path / "m.tflite"
    onnx_as_tflite.write_bytes(foreign_models["onnx"].read_bytes())
    with pytest.raises(InvalidModelError, match=r"m.tflite: not a TFLite model.*ONNX"):
        Runtime(onnx_as_tflite)
    tflite_as_onnx = tmp_path / "m.onnx"
    tflite_as_onnx.write_bytes(foreign_models["float"].read_bytes())
    with pytest.raises(InvalidModelError, match="TFLite model, not ONNX"):
        Runtime(tflite_as_onnx)
    truncated = tmp_path / "t.onnx"
    truncated.write_bytes(foreign_models["onnx"].read_bytes()[:500])
    with pytest.raises(InvalidModelError, match="t.onnx"):
        Runtime(truncated)
    other = tmp_path / "m.pt"
    other.write_bytes(b"PK")
    with pytest.raises(InvalidModelError, match="unsupported model format .pt"):
        Runtime(other)


def test_devices_without_hardware_say_what_to_install(foreign_models):
    with pytest.raises(InvalidModelError, match="not compiled for the Edge TPU"):
        Runtime(foreign_models["uint8"], device="coral")
    with pytest.raises(DeviceUnavailableError, match="GPU delegate"):
        Runtime(foreign_models["float"], device="gpu")
    with pytest.raises(DeviceUnavailableError, match="onnxruntime-gpu"):
        Runtime(foreign_models["onnx"], device="gpu")
    with pytest.raises(DeviceUnavailableError, match="jetson"):
        Runtime(foreign_models["onnx"], device="jetson")
    with pytest.raises(DeviceUnavailableError, match="unknown device"):
        Runtime(foreign_models["onnx"], device="tpu")


def test_onnx_provider_selection():
    cpu = ["CPUExecutionProvider"]
    assert onnx_providers("cpu", cpu) == cpu
    assert onnx_providers("gpu", ["CUDAExecutionProvider", *cpu]) == ["CUDAExecutionProvider", *cpu]
    trt = onnx_providers("jetson", ["TensorrtExecutionProvider", "CUDAExecutionProvider", *cpu], cache_dir="/c")
    assert trt[0][0] == "TensorrtExecutionProvider" and trt[0][1]["trt_engine_cache_path"] == "/c"
    assert trt[0][1]["trt_engine_cache_enable"] and trt[1:] == ["CUDAExecutionProvider", *cpu]
    assert onnx_providers("jetson", ["CUDAExecutionProvider", *cpu]) == ["CUDAExecutionProvider", *cpu]
    for dev in ("gpu", "jetson", "coral"):
        with pytest.raises(DeviceUnavailableError):
            onnx_providers(dev, cpu)


def test_runtime_import_never_loads_tensorflow(tiny_tflite, foreign_models):
    code = textwrap.dedent(f"""
        import sys, numpy as np
        import edgeclf
        from edgeclf import Runtime
        Runtime({str(tiny_tflite)!r}).predict(np.zeros((20, 30, 3), np.uint8))
        Runtime({str(foreign_models['onnx'])!r}).predict(np.zeros((20, 30, 3), np.uint8))
        from edgeclf.cli import main
        heavy = [m for m in ("tensorflow", "keras", "tf_keras", "tensorflow_model_optimization", "tf2onnx", "onnx")
                 if m in sys.modules]
        print("heavy:" + ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "heavy:"


def test_logits_models_get_softmax_and_softmax_models_do_not(foreign_models):
    """Whether scores need a softmax is read from the graph (TFLite) or decided once (ONNX), never per image."""
    rt = Runtime(foreign_models["logits"], mean=127.5, std=127.5)  # the float model's net without its softmax
    frame = np.random.default_rng(3).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    raw = rt.infer(rt.preprocess(frame))[0][0]
    np.testing.assert_allclose(rt.probabilities(frame), np.exp(raw) / np.exp(raw).sum(), rtol=1e-5)


def test_preprocess_is_safe_from_several_threads(tiny_tflite, sample_images):
    """``preprocess`` keeps no shared buffer (``predict`` does, and is one-thread-at-a-time like the interpreter)."""
    import threading
    rt = Runtime(tiny_tflite, color="RGB")
    images = sample_images + [cv2.flip(img, 1) for img in sample_images]
    want = [rt.preprocess(img) for img in images]
    wrong: list[int] = []
    done: list[int] = []

    def work(i: int) -> None:
        for _ in range(300):
            if not np.array_equal(rt.preprocess(images[i]), want[i]):
                wrong.append(i)
        done.append(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(images))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(done) == list(range(len(images))) and not wrong


@pytest.mark.parametrize("kind", ["tflite", "onnx"])
def test_the_engine_runs_the_checked_bytes_not_the_path(tmp_path, monkeypatch, foreign_models, tiny_tflite, kind):
    """The file is swapped for garbage right after its one read: a Runtime that re-read the path would fail."""
    import edgeclf.runtime.runtime as runtime_module

    model = tmp_path / f"m.{kind}"
    model.write_bytes((tiny_tflite if kind == "tflite" else foreign_models["onnx"]).read_bytes())
    read = runtime_module.read_model_bytes

    def read_then_swap(path):
        data = read(path)
        Path(path).write_bytes(b"\0" * len(data))
        return data

    monkeypatch.setattr(runtime_module, "read_model_bytes", read_then_swap)
    rt = Runtime(model, input_size=(SIZE, SIZE))
    assert rt.predict(np.zeros((SIZE, SIZE, 3), np.uint8))


def test_png_chunk_lengths_are_checked_before_decoding():
    """A 2 KB PNG whose IDAT declares 3.6 GB made OpenCV allocate the declared length (found by benchmarks/fuzz.py)."""
    import struct

    from edgeclf.runtime.images import decode_untrusted
    ok, png = cv2.imencode(".png", np.full((48, 64, 3), 90, np.uint8))
    data = bytearray(png.tobytes())
    idat = data.index(b"IDAT") - 4
    data[idat:idat + 4] = struct.pack(">I", 3_674_212_020)
    with pytest.raises(ImageError, match="'IDAT' chunk declares 3674212020 bytes"):
        decode_untrusted(bytes(data), 4_000_000)
