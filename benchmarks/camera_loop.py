"""Camera-loop benchmark: edgeclf's newest-frame loop against a naive ``cap.read()`` loop, on a 30 fps source.

    python benchmarks/camera_loop.py [--model M.tflite ...] [--seconds 10] [--out benchmarks/results/camera_loop.json]

A 640x480 MJPG video is generated at 30 fps. Each model is measured alone (model fps), then:

* ``edgeclf realtime file``: ``edgeclf.camera.stream(runtime, video, realtime=True)``, the file paced at its
  own rate with stale frames dropped. Pass criteria: throughput / min(source fps, model fps) >= 0.95 and
  p95 capture-to-result latency <= one frame interval + p95 inference time.
* an emulated camera (frames released at 30 fps into a V4L2-like queue of 4 buffers; when the queue is full
  the driver drops the new frame) read by the naive loop (``frame = cam.read(); classify(frame)``) and by
  ``edgeclf.camera.stream``; and the naive loop on an unbounded queue (a network stream demuxer), where
  the lag grows for as long as the model is slower than the source.

Latency is measured from the camera's capture time, found from the frame number stamped into each frame's
first pixels, to the result. Without ``--model`` two MobileNetV2 .tflite files are built with TensorFlow
(``[train]`` extra): alpha 0.35 at 96 px (faster than the source) and alpha 1.0 at 640 px (slower).
"""
from __future__ import annotations

import argparse
import os
import platform
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from edgeclf import camera
from edgeclf.fileio import atomic_write_text
from edgeclf.runtime import Runtime

SOURCE_FPS = 30.0
SIZE = (640, 480)
V4L2_BUFFERS = 4


def stamp(image: np.ndarray, number: int) -> None:
    """Write ``number`` into the top-left corner as 24 black/white 8x8 blocks, one bit each (survives JPEG)."""
    for bit in range(24):
        image[0:8, bit * 8:(bit + 1) * 8] = 255 if number >> bit & 1 else 0


def read_stamp(image: np.ndarray) -> int:
    return sum(1 << bit for bit in range(24) if image[2:6, bit * 8 + 2:bit * 8 + 6].mean() > 127)


def make_video(path: Path, seconds: float) -> Path:
    """A moving-gradient 640x480 MJPG video at 30 fps with the frame number stamped into every frame."""
    w, h = SIZE
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), SOURCE_FPS, (w, h))
    xs = np.linspace(0, 255, w, dtype=np.float32)
    for i in range(int(seconds * SOURCE_FPS)):
        row = ((xs + i * 4) % 256).astype(np.uint8)
        img = np.dstack([np.tile(row, (h, 1)), np.tile(row[::-1], (h, 1)), np.full((h, w), i % 256, np.uint8)])
        stamp(img, i)
        writer.write(img)
    writer.release()
    return path


def build_models(folder: Path) -> list[Path]:
    """Two randomly initialised MobileNetV2 .tflite files with edgeclf metadata (needs TensorFlow)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf
    import tf_keras as keras

    from edgeclf.artifact import Metadata, Preprocess, write_metadata

    out = []
    for alpha, px in [(0.35, 96), (1.0, 640)]:
        keras.utils.set_random_seed(0)
        model = keras.applications.MobileNetV2((px, px, 3), alpha=alpha, weights=None, classes=10)
        path = folder / f"mobilenetv2_{alpha}_{px}.tflite"
        path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
        meta = Metadata(labels=[f"class{i}" for i in range(10)], output="probabilities", source="benchmark",
                        preprocess=Preprocess(input_size=(px, px), mean=127.5, std=127.5))
        out.append(write_metadata(path, meta))
    return out


class EmulatedCamera:
    """Frames of a video released at the source rate into a driver-like queue; a full queue drops the new frame.

    It is an edgeclf ``FrameSource`` (live), and ``read`` is the ``cap.read()`` of the naive loop.
    """

    live, fps = True, SOURCE_FPS

    def __init__(self, video: Path, buffers: int | None) -> None:
        self.video, self.buffers = video, buffers
        self.name = f"emulated camera ({buffers or 'unbounded'} buffers)"
        self.captured: dict[int, float] = {}
        self.ended = threading.Event()
        self.driver_drops = 0
        self._queue: queue.Queue = queue.Queue(maxsize=buffers or 0)
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, daemon=True)
            self._thread.start()

    def _produce(self) -> None:
        cap = cv2.VideoCapture(str(self.video))
        t0, i = time.monotonic(), 0
        while True:
            delay = t0 + i / SOURCE_FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ok, frame = cap.read()
            if not ok:
                break
            self.captured[i] = time.monotonic()
            try:
                self._queue.put_nowait(frame)
            except queue.Full:
                self.driver_drops += 1
            i += 1
        cap.release()
        self._queue.put(None)
        self.ended.set()

    def read(self) -> np.ndarray | None:
        frame = self._queue.get()
        if frame is None:
            self._queue.put(None)  # the end stays the end for every later read
        return frame

    def close(self) -> None:
        """Nothing to release: the producer stops at the end of the video."""


def summarize(name: str, rows: list[tuple[int, float, float]], produced: int, infer_ms: list[float],
              model_fps: float) -> dict[str, Any]:
    """rows: (frame number, capture time, result time). Throughput is over the span the source was running."""
    numbers, captured, done = (np.array(c) for c in zip(*rows))
    latency = (done - captured) * 1e3
    span = done[-1] - captured[0]
    fps = (len(rows) - 1) / span if span > 0 else 0.0
    target = min(SOURCE_FPS, model_fps)
    tail = latency[-max(1, len(latency) // 10):]
    bound = 1000 / SOURCE_FPS + float(np.percentile(infer_ms, 95))
    return {"loop": name, "frames_produced": produced, "processed": len(rows),
            "throughput_fps": round(fps, 2), "throughput_ratio": round(fps / target, 3),
            "latency_ms_p50": round(float(np.median(latency)), 1),
            "latency_ms_p95": round(float(np.percentile(latency, 95)), 1),
            "latency_ms_max": round(float(latency.max()), 1), "latency_ms_last10pct": round(float(tail.mean()), 1),
            "latency_bound_ms": round(bound, 1), "frames_behind_at_end": int(produced - 1 - numbers[-1]),
            "infer_ms_p50": round(float(np.median(infer_ms)), 2)}


def naive_loop(rt: Runtime, cam: EmulatedCamera) -> tuple[list[tuple[int, float, float]], list[float]]:
    """The loop in most camera examples: read a frame, classify it, repeat."""
    rows, infer = [], []
    cam.open()
    while (frame := cam.read()) is not None:
        t0 = time.monotonic()
        rt.probabilities(frame)
        t1 = time.monotonic()
        n = read_stamp(frame)
        rows.append((n, cam.captured[n], t1))
        infer.append((t1 - t0) * 1e3)
    return rows, infer


def edgeclf_loop(results: Iterator[camera.Result], captured: dict[int, float] | None
                 ) -> tuple[list[tuple[int, float, float]], list[float]]:
    """Consume ``edgeclf.camera`` results; capture times from the camera when given, else the loop's own."""
    rows, infer = [], []
    for r in results:
        t_done = time.monotonic()
        n = read_stamp(r.image)
        rows.append((n, captured[n] if captured is not None else t_done - r.latency_ms / 1e3, t_done))
        infer.append(r.infer_ms)
    return rows, infer


def measure_model(rt: Runtime, video: Path, n: int = 40) -> float:
    """Model fps alone: preprocessing + inference on real frames of the video, after a warm-up."""
    ok, frame = cv2.VideoCapture(str(video)).read()
    for _ in range(5):
        rt.probabilities(frame)
    t0 = time.perf_counter()
    for _ in range(n):
        rt.probabilities(frame)
    return n / (time.perf_counter() - t0)


def bench_model(path: Path, video: Path, produced: int) -> dict[str, Any]:
    rt = Runtime(path)
    model_fps = measure_model(rt, video)
    runs = []
    rows, infer = edgeclf_loop(iter(camera.stream(rt, str(video), realtime=True)), None)
    runs.append(summarize("edgeclf, file --realtime", rows, produced, infer, model_fps))
    for buffers in (V4L2_BUFFERS, None):
        cam = EmulatedCamera(video, buffers)
        rows, infer = naive_loop(rt, cam)
        runs.append(summarize(f"naive cap.read(), {cam.name}", rows, produced, infer, model_fps))
    cam = EmulatedCamera(video, V4L2_BUFFERS)
    rows, infer = edgeclf_loop(iter(camera.stream(rt, cam, stop=cam.ended)), cam.captured)
    runs.append(summarize(f"edgeclf stream, {cam.name}", rows, produced, infer, model_fps))
    realtime = runs[0]
    return {"model": path.name, "input_size": list(rt.input_size), "backend": rt.backend,
            "model_fps_alone": round(model_fps, 1), "source_fps": SOURCE_FPS, "runs": runs,
            "pass_throughput": bool(realtime["throughput_ratio"] >= 0.95),
            "pass_latency": bool(realtime["latency_ms_p95"] <= realtime["latency_bound_ms"])}


def print_table(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    for m in report["models"]:
        table = Table(title=f"{m['model']}: model alone {m['model_fps_alone']} fps, source {m['source_fps']:.0f} fps; "
                            f"throughput ok={m['pass_throughput']} latency ok={m['pass_latency']}")
        for col in ("loop", "processed", "fps", "ratio", "p50 ms", "p95 ms", "max ms", "last 10% ms", "bound ms",
                    "behind at end"):
            table.add_column(col)
        for r in m["runs"]:
            table.add_row(r["loop"], str(r["processed"]), str(r["throughput_fps"]), str(r["throughput_ratio"]),
                          str(r["latency_ms_p50"]), str(r["latency_ms_p95"]), str(r["latency_ms_max"]),
                          str(r["latency_ms_last10pct"]), str(r["latency_bound_ms"]), str(r["frames_behind_at_end"]))
        console.print(table)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", type=Path, help="A .tflite/.onnx model (repeatable).")
    ap.add_argument("--seconds", type=float, default=10.0, help="Length of the generated video.")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "camera_loop.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        video = make_video(Path(tmp) / "source.avi", args.seconds)
        produced = int(args.seconds * SOURCE_FPS)
        models = args.model or build_models(Path(tmp))
        report = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                              "cpus": os.cpu_count(), "python": sys.version.split()[0], "opencv": cv2.__version__,
                              "loadavg_1min_at_start": round(os.getloadavg()[0], 2)},
                  "source": {"fps": SOURCE_FPS, "size": list(SIZE), "seconds": args.seconds},
                  "models": [bench_model(m, video, produced) for m in models]}
    import json
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"wrote {args.out}")
    return 0 if all(m["pass_throughput"] and m["pass_latency"] for m in report["models"]) else 1


if __name__ == "__main__":
    sys.exit(main())
