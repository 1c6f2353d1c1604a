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
def lite0(lite0_converted):
    """The pretrained EfficientNet-Lite0 as fp32 and int8 (uint8 I/O) .tflite, converted by edgeclf.convert."""
    import skimage.data

    return lite0_converted["results"], [Path(skimage.data.__file__).parent / name for name in PHOTOS]


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
