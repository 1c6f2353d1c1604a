"""The camera loop: every frame offline, newest frame in real time, reconnects, skips, signals, schema, memory."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf import camera
from edgeclf.runtime import Runtime
from edgeclf.camera.sources import FolderSource, SourceError, open_source

FPS = 30.0
EDGECLF = [sys.executable, "-c", "from edgeclf.cli import main; main()"]
RECORD_KEYS = {"frame", "ts", "index", "label", "score", "infer_ms", "latency_ms", "fps", "dropped", "skipped", "top_k"}


def write_clip(path: Path, frames: int, size: tuple[int, int] = (64, 48), fps: float = FPS) -> Path:
    """An MJPG .avi whose frame i is a flat colour that changes with i (decodable by headless OpenCV)."""
    w, h = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for i in range(frames):
        img = np.empty((h, w, 3), np.uint8)
        img[:] = ((i * 37) % 256, (i * 11) % 256, (255 - i * 5) % 256)
        writer.write(img)
    writer.release()
    return path


def video_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


@pytest.fixture(scope="module")
def runtime(tiny_tflite) -> Runtime:
    return Runtime(tiny_tflite)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clip") / "clip.avi", 30)


class SlowRuntime:
    """The real runtime made slower than the source, to force stale frames in realtime mode."""

    def __init__(self, runtime: Runtime, seconds: float) -> None:
        self.runtime, self.seconds = runtime, seconds

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        return self.runtime.probabilities(image)

    def top(self, probs: np.ndarray, k: int):
        return self.runtime.top(probs, k)


class FlakySource:
    """A live source: ``drop_after`` frames, a drop, ``refusals`` refused re-opens, frames again up to ``total``,
    then unplugged for good (every re-open refused)."""

    live, fps, name = True, None, "flaky test camera"

    def __init__(self, drop_after: int, refusals: int, total: int) -> None:
        self.drop_after, self.refusals, self.total = drop_after, refusals, total
        self.opens, self.sent, self.dropped, self._open = 0, 0, False, False

    def open(self) -> None:
        self.opens += 1
        if self.sent >= self.total or 1 < self.opens <= 1 + self.refusals:
            raise SourceError(f"{self.name}: not there (open #{self.opens})")
        self._open = True

    def read(self) -> np.ndarray | None:
        if not self._open:
            return None
        if self.sent == self.drop_after and not self.dropped:
            self.dropped = True
            return None
        if self.sent >= self.total:
            raise OSError("unplugged")
        self.sent += 1
        time.sleep(0.005)
        return np.full((24, 32, 3), self.sent % 256, np.uint8)

    def close(self) -> None:
        self._open = False


def test_file_gives_every_frame_in_order_with_timings(runtime, clip):
    results = list(camera.stream(runtime, str(clip), top_k=2))
    assert [r.frame for r in results] == list(range(30))
    r = results[-1]
    assert r.dropped == 0 and r.skipped == 0
    assert len(r.top_k) == 2 and r.top_k[0].score >= r.top_k[1].score
    assert r.label == r.top_k[0].label and r.index == r.top_k[0].index
    assert r.infer_ms > 0 and r.latency_ms >= r.infer_ms and r.fps > 0
    expected = runtime.probabilities(cv2.VideoCapture(str(clip)).read()[1])
    assert results[0].score == pytest.approx(float(expected.max()), abs=1e-5)


def test_realtime_paces_the_file_and_drops_stale_frames(runtime, clip):
    t0 = time.monotonic()
    fast = list(camera.stream(runtime, str(clip), realtime=True))
    elapsed = time.monotonic() - t0
    assert len(fast) >= 28 and elapsed >= 29 / FPS * 0.9  # paced at the file's 30 fps, not as fast as possible
    slow = list(camera.stream(SlowRuntime(runtime, 0.1), str(clip), realtime=True))
    numbers = [r.frame for r in slow]
    assert 6 <= len(slow) <= 14 and slow[-1].dropped >= 14  # ~10 fps of model on a 30 fps source
    assert numbers == sorted(numbers) and max(np.diff(numbers)) >= 2
    # the newest frame is used: capture-to-result is at most one frame interval plus the inference
    assert all(r.latency_ms <= 1000 / FPS + r.infer_ms + 25 for r in slow)


def test_live_source_reconnects_after_a_drop_then_gives_up_cleanly(runtime):
    source = FlakySource(drop_after=5, refusals=1, total=12)
    s = camera.stream(runtime, source, reconnect=2, reconnect_delay=0.01)
    got = []
    with pytest.raises(SourceError, match=r"flaky test camera: source lost \(OSError: unplugged\) and 2 reconnect "
                                          r"attempt\(s\) failed; last: flaky test camera: not there \(open #5\)"):
        for r in s:
            got.append(r.frame)
    assert s.stats.reconnects == 1 and source.opens == 5   # open, refused, back, then two refused at the end
    assert got == sorted(got) and len(got) >= 8 and got[-1] >= 10   # frames kept coming after the reconnect


def test_reconnect_attempts_are_bounded(runtime):
    source = FlakySource(drop_after=3, refusals=5, total=10)
    s = camera.stream(runtime, source, reconnect=2, reconnect_delay=0.01)
    with pytest.raises(SourceError, match="2 reconnect attempt"):
        list(s)
    assert s.stats.reconnects == 0 and source.opens == 3


def test_folder_in_order_skips_and_counts_a_corrupt_image(runtime, tmp_path):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((20, 30, 3), i * 60, np.uint8))
    (tmp_path / "img2b.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    s = camera.stream(runtime, str(tmp_path))
    results = list(s)
    assert [r.frame for r in results] == [0, 1, 2, 4]  # img0 img1 img2 (img2b corrupt) img3
    assert s.stats.skipped == 1 and s.stats.processed == 4
    assert isinstance(open_source(str(tmp_path)), FolderSource)


def test_threshold_gives_unknown_and_smoothing_averages(runtime, clip):
    assert {(r.index, r.label) for r in camera.stream(runtime, str(clip), threshold=1.0)} == {(-1, "unknown")}
    raw = [runtime.probabilities(r.image) for r in camera.stream(runtime, str(clip), max_frames=5)]
    smoothed = list(camera.stream(runtime, str(clip), smooth=3, max_frames=5))
    assert len(smoothed) == 5
    for i, r in enumerate(smoothed):
        assert r.score == pytest.approx(float(np.mean(raw[max(0, i - 2):i + 1], axis=0).max()), abs=1e-5)


def test_sources_that_cannot_be_opened_fail_with_one_clear_error(runtime, tmp_path):
    with pytest.raises(SourceError, match="no such file, folder, camera or stream URL"):
        list(camera.stream(runtime, str(tmp_path / "missing.mp4")))
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(os.urandom(2000))
    with pytest.raises(SourceError, match="garbage.avi: cannot open video file"):
        list(camera.stream(runtime, str(bad)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="empty: no images in this folder"):
        list(camera.stream(runtime, str(empty)))
    cv2.imwrite(str(empty / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SourceError, match="realtime pacing needs the frame rate"):
        list(camera.stream(runtime, str(empty), realtime=True))


def test_callback_form_stops_when_the_callback_says_so(runtime, clip):
    seen = []
    stats = camera.run(runtime, str(clip), on_result=lambda r: seen.append(r.frame) or len(seen) < 7)
    assert seen == list(range(7)) and stats.processed == 7


def test_memory_stays_flat_over_thousands_of_frames(runtime, tmp_path):
    clip = write_clip(tmp_path / "long.avi", 3000, size=(32, 24))

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    marks = {}
    for r in camera.stream(runtime, str(clip), smooth=5):
        r.to_dict()
        if r.frame in (500, 2999):
            marks[r.frame] = rss_mb()
    assert set(marks) == {500, 2999}
    assert marks[2999] - marks[500] < 4.0, marks


def _edgeclf(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*EDGECLF, *args], capture_output=True, text=True,
                          timeout=120, **kw)


def test_cli_headless_json_lines_and_saved_video(tiny_tflite, clip, tmp_path):
    out, video = tmp_path / "r.jsonl", tmp_path / "annotated.avi"
    proc = _edgeclf("run", str(tiny_tflite), "--source", str(clip), "--headless", "--json", str(out),
                    "--save", str(video), "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 30 and [r["frame"] for r in records] == list(range(30))
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert isinstance(r["index"], int) and isinstance(r["label"], str) and 0 <= r["score"] <= 1
        assert r["infer_ms"] > 0 and r["latency_ms"] > 0 and len(r["top_k"]) == 2
    assert video_frame_count(video) == 30
    assert "30 frames" in proc.stderr and not list(tmp_path.glob(".*part*"))


def test_cli_without_display_falls_back_to_json_on_stdout(tiny_tflite, clip):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = _edgeclf("run", str(tiny_tflite), "--source", str(clip), "--max-frames", "4", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("running headless") == 1
    assert [json.loads(line)["frame"] for line in proc.stdout.splitlines()] == [0, 1, 2, 3]


def test_cli_source_errors_are_one_line(tiny_tflite, tmp_path):
    proc = _edgeclf("run", str(tiny_tflite), "--source", str(tmp_path / "nope.mp4"), "--headless")
    assert proc.returncode == 1 and "edgeclf: error: " in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.iterdir())


def test_sigterm_closes_json_and_video_cleanly(tiny_tflite, tmp_path):
    clip = write_clip(tmp_path / "ten_seconds.avi", 300)
    out, video = tmp_path / "r.jsonl", tmp_path / "r.avi"
    proc = subprocess.Popen([*EDGECLF, "run", str(tiny_tflite), "--source", str(clip),
                             "--realtime", "--headless", "--json", str(out), "--save", str(video)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 2000 for p in tmp_path.glob(".r.jsonl.*/r.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert 5 <= len(records) < 300
    assert video_frame_count(video) == len(records)
    assert not list(tmp_path.glob(".*part*"))


def test_runtime_path_does_not_import_tensorflow():
    code = ("import sys, edgeclf.camera, edgeclf.camera.sinks, edgeclf.camera.sources, edgeclf.cli.run; "
            "print([m for m in ('tensorflow', 'keras', 'tf_keras') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _pi_example():
    import importlib.util
    path = Path(__file__).parents[1] / "examples" / "raspberrypi" / "classify_camera.py"
    spec = importlib.util.spec_from_file_location("classify_camera", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return path, module


@pytest.mark.parametrize("resize", ["stretch", "crop", "letterbox"])
def test_raspberrypi_example_preprocesses_like_the_runtime(tiny_tflite, sample_images, tmp_path, resize):
    from edgeclf.artifact import read_metadata, write_metadata
    model = write_metadata(tiny_tflite, read_metadata(tiny_tflite).replace(preprocess={"resize": resize}),
                           tmp_path / f"{resize}.tflite")
    _, example = _pi_example()
    clf, rt = example.Classifier(str(model)), Runtime(model)
    assert clf.labels == rt.labels and clf.resize == resize
    for img in sample_images:
        np.testing.assert_allclose(clf.probabilities(img), rt.probabilities(img), atol=1e-5)


def test_raspberrypi_example_runs_headless_on_a_video(tiny_tflite, clip):
    path, _ = _pi_example()
    proc = subprocess.run([sys.executable, str(path), str(tiny_tflite), "--source", str(clip), "--headless",
                           "--max-frames", "3"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 3 and all(RECORD_KEYS - {"dropped", "skipped"} <= set(r) for r in records)
