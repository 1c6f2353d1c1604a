"""Shared fixtures: tiny classifiers made with plain TensorFlow (not edgeclf), as a user's foreign model would be
(tests/fixture_models.py).

They are built once per session. TensorFlow is imported only inside the fixtures, so tests that must prove
the runtime is TensorFlow-free run in subprocesses. With $EDGECLF_TEST_MODELS set they are read from that folder
instead, so the runtime tests run where TensorFlow is not installed.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from fixture_models import CLASSES, PREBUILT_ENV, SIZE, build_models, keras_model as _keras_model, load_models

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import _models  # noqa: E402  (reference models and photos shared with the benchmarks)
PHOTOS = {"tabby, tabby cat": "chelsea.png", "espresso": "coffee.png", "missile": "rocket.jpg",
          "moped": "motorcycle_left.png"}  # ImageNet class -> scikit-image photo (Lite0 misreads only the cat)
__all__ = ["CLASSES", "SIZE"]

# Files that train or run the demo take most of the suite's time: they go first, so that with
# pytest -n 2 (README.md) the other worker takes the many short files meanwhile.
SLOWEST_FIRST = ("test_training.py", "test_demo.py", "test_distributed.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the slowest files first (a stable sort: each file keeps its own order)."""
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.hookimpl(optionalhook=True)  # pytest-xdist is only in the dev extra, not in the runtime test envs
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole files to one worker each (module fixtures are built once), in collection order: xdist's default
    reorder by test count would start the few-test, slow files last."""
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)


@pytest.fixture(scope="session")
def keras_model():
    pytest.importorskip("tf_keras", reason="needs TensorFlow (the [train] extra)")
    return _keras_model()


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory, request) -> dict[str, Path]:
    """float / uint8-io int8 / int8-io int8 / logits .tflite, an NHWC and an NCHW .onnx, none carrying edgeclf
    metadata, and labels.txt; built once per session, or read from $EDGECLF_TEST_MODELS (made beforehand by
    tests/fixture_models.py) where TensorFlow is absent."""
    prebuilt = os.environ.get(PREBUILT_ENV)
    if prebuilt:
        return load_models(Path(prebuilt))
    return build_models(tmp_path_factory.mktemp("foreign"), request.getfixturevalue("keras_model"))


@pytest.fixture(scope="session")
def tiny_tflite(foreign_models) -> Path:
    """A float .tflite with edgeclf metadata (labels, mean/std 127.5, RGB, stretch) embedded."""
    return foreign_models["meta"]


@pytest.fixture(scope="session")
def sample_images() -> list[np.ndarray]:
    """A few BGR uint8 frames of different sizes and content."""
    rng = np.random.default_rng(7)
    imgs = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), rng.integers(0, 256, (50, 80, 3), dtype=np.uint8)]
    grad = np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (90, 1))
    imgs.append(np.dstack([grad, grad[::-1], np.full_like(grad, 60)]))
    return imgs


@pytest.fixture(scope="session")
def lite0_tflite(tmp_path_factory) -> Path:
    """EfficientNet-Lite0 with ImageNet weights (1000 classes) as an fp32 .tflite without metadata; built once."""
    return _models.lite0_tflite(tmp_path_factory.mktemp("lite0") / "efficientnet_lite0.tflite")


@pytest.fixture(scope="session")
def imagenet_labels(tmp_path_factory) -> Path:
    """The 1000 ImageNet class names, one a line (index 0 is "tench, Tinca tinca")."""
    return _models.imagenet_labels(tmp_path_factory.mktemp("imagenet") / "labels.txt")


@pytest.fixture(scope="session")
def lite0_converted(tmp_path_factory) -> dict:
    """The pretrained Lite0 converted once by ``edgeclf.convert`` to fp32 and int8 (uint8 I/O) .tflite, its int8
    ranges fitted on 40 photo crops and both files gated on 100 other crops; the parity and MediaPipe tests
    share it (an int8 calibration of Lite0 takes most of a minute)."""
    from edgeclf.conversion.pipeline import convert

    d = tmp_path_factory.mktemp("lite0-converted")
    model, labels, pre = _models.lite0_keras(d)
    calib, check = _models.photo_crops(d / "calib", 40, seed=0), _models.photo_crops(d / "check", 100, seed=1)
    results = convert(model, to="tflite", quant="fp32,int8", calib=calib, check=check, labels=labels,
                      mean=list(pre.mean), std=list(pre.std), out=d / "out", verbose=False)
    return {"dir": d, "model": model, "labels": labels, "pre": pre, "check": check,
            "results": {r.quant: r for r in results}}


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory) -> Path:
    """Real photos from scikit-image's wheel, one a class folder named after its ImageNet class."""
    import skimage

    from edgeclf.data import folder_name
    root = tmp_path_factory.mktemp("photos")
    for label, photo in PHOTOS.items():
        (root / folder_name(label)).mkdir()
        shutil.copy(Path(skimage.__file__).parent / "data" / photo, root / folder_name(label) / photo)
    return root
