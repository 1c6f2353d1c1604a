#!/usr/bin/env python3
"""Classify what a Raspberry Pi camera sees, in real time, with an edgeclf .tflite model.

Needs only a TFLite runtime (ai-edge-litert or tflite-runtime), OpenCV and numpy -- not edgeclf. Labels
and preprocessing are read from the model's embedded edgeclf metadata (override with --labels/--mean/--std).

    python3 classify_camera.py model.tflite                          # USB camera 0, window if a display exists
    python3 classify_camera.py model.tflite --source picamera2       # Pi camera module (python3-picamera2)
    python3 classify_camera.py model.tflite --source /dev/video0 --width 640 --height 480 --fps 30
    python3 classify_camera.py model_edgetpu.tflite --device coral    # Coral USB Accelerator (libedgetpu1-std)
    python3 classify_camera.py model.tflite --headless > results.jsonl   # one JSON object per frame

Options: --threads N (CPU threads, default: all cores), --top-k K, --threshold T (below: "unknown"),
--labels FILE, --mean M --std S, --max-frames N. --source also takes a video file or rtsp:// URL.
The newest frame is always the one classified (a capture thread drains the camera), so results never lag
behind the scene; SIGTERM/Ctrl-C exits cleanly; a camera that disappears is re-opened with backoff.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import threading
import time

import cv2
import numpy as np

try:
    from ai_edge_litert.interpreter import Interpreter, load_delegate
except ImportError:
    from tflite_runtime.interpreter import Interpreter, load_delegate

EDGETPU_LIB = {"linux": "libedgetpu.so.1", "darwin": "libedgetpu.1.dylib", "win32": "edgetpu.dll"}


# -- the edgeclf metadata: a JSON document in the .tflite flatbuffer's metadata entry named "edgeclf" ----------
def _table(buf: bytes, pos: int):
    """Return a field(idx) -> absolute position (0 if absent) accessor for the flatbuffer table at pos."""
    vt = pos - struct.unpack_from("<i", buf, pos)[0]
    vsize = struct.unpack_from("<H", buf, vt)[0]

    def field(idx: int) -> int:
        if 4 + 2 * idx >= vsize:
            return 0
        off = struct.unpack_from("<H", buf, vt + 4 + 2 * idx)[0]
        return pos + off if off else 0
    return field


def _vector(buf: bytes, pos: int) -> tuple[int, int]:
    start = pos + struct.unpack_from("<I", buf, pos)[0]
    return start + 4, struct.unpack_from("<I", buf, start)[0]


def read_edgeclf_metadata(path: str) -> dict:
    """The edgeclf metadata dict of a .tflite file, or {} when it has none."""
    buf = open(path, "rb").read()
    model = _table(buf, struct.unpack_from("<I", buf, 0)[0])
    if not model(6) or not model(4):
        return {}
    bstart, _ = _vector(buf, model(4))
    mstart, mcount = _vector(buf, model(6))
    for i in range(mcount):
        entry = mstart + 4 * i
        meta = _table(buf, entry + struct.unpack_from("<I", buf, entry)[0])
        nstart, nlen = _vector(buf, meta(0))
        if buf[nstart:nstart + nlen] != b"edgeclf":
            continue
        bidx = struct.unpack_from("<I", buf, meta(1))[0]
        bentry = bstart + 4 * bidx
        buffer = _table(buf, bentry + struct.unpack_from("<I", buf, bentry)[0])
        if buffer(0):
            dstart, dlen = _vector(buf, buffer(0))
            return json.loads(buf[dstart:dstart + dlen])
        offset, size = (struct.unpack_from("<Q", buf, buffer(k))[0] if buffer(k) else 0 for k in (1, 2))
        return json.loads(buf[offset:offset + size])
    return {}


# -- the model ---------------------------------------------------------------------------------------------------
class Classifier:
    """A .tflite image classifier with edgeclf preprocessing: BGR frame in, probability vector out."""

    def __init__(self, path: str, threads: int | None = None, coral: bool = False, labels: str | None = None,
                 mean: list[float] | None = None, std: list[float] | None = None) -> None:
        delegates = [load_delegate(EDGETPU_LIB.get(sys.platform, "libedgetpu.so.1"))] if coral else None
        self.interpreter = Interpreter(model_path=path, num_threads=threads or os.cpu_count(),
                                       experimental_delegates=delegates)
        self.interpreter.allocate_tensors()
        self.inp = self.interpreter.get_input_details()[0]
        self.out = self.interpreter.get_output_details()[0]
        meta = read_edgeclf_metadata(path)
        pre = meta.get("preprocess", {})
        _, h, w, c = self.inp["shape"]
        self.size = (int(h), int(w))
        self.color = pre.get("color", "GRAY" if c == 1 else "RGB")
        self.resize, self.crop_ratio = pre.get("resize", "crop"), float(pre.get("crop_ratio", 0.875))
        self.pad = int(pre.get("pad_value", 0))
        self.mean = np.asarray(mean or pre.get("mean", [0.0]), np.float32)
        self.std = np.asarray(std or pre.get("std", [1.0]), np.float32)
        self.output = meta.get("output", "auto")
        n = int(np.prod(self.out["shape"][1:]))
        if labels:
            self.labels = [line.strip() for line in open(labels, encoding="utf-8") if line.strip()]
        else:
            self.labels = meta.get("labels") or [str(i) for i in range(n)]

    def _fit(self, img: np.ndarray) -> np.ndarray:
        """Resize to the input size exactly as edgeclf does: centre crop, letterbox or stretch."""
        th, tw = self.size
        h, w = img.shape[:2]

        def resize(im: np.ndarray, nw: int, nh: int) -> np.ndarray:
            """Average whole k x k blocks when shrinking 2x or more, then bilinear (edgeclf's resize)."""
            ih, iw = im.shape[:2]
            if (iw, ih) == (nw, nh):
                return im
            k = min(iw // nw, ih // nh)
            if k >= 2:
                im = cv2.resize(im[:ih - ih % k, :iw - iw % k], (iw // k, ih // k), interpolation=cv2.INTER_AREA)
                if im.shape[:2] == (nh, nw):
                    return im
            return cv2.resize(im, (nw, nh), interpolation=cv2.INTER_LINEAR)
        if self.resize == "stretch":
            return resize(img, tw, th)
        if self.resize == "crop":
            s = max(th / h, tw / w) / self.crop_ratio
            ch, cw = min(h, max(1, round(th / s))), min(w, max(1, round(tw / s)))
            y0, x0 = (h - ch) // 2, (w - cw) // 2
            return resize(img[y0:y0 + ch, x0:x0 + cw], tw, th)
        s = min(th / h, tw / w)
        nh, nw = max(1, round(h * s)), max(1, round(w * s))
        top, left = (th - nh) // 2, (tw - nw) // 2
        return cv2.copyMakeBorder(resize(img, nw, nh), top, th - nh - top, left, tw - nw - left,
                                  cv2.BORDER_CONSTANT, value=(self.pad,) * 3)

    def probabilities(self, frame_bgr: np.ndarray) -> np.ndarray:
        img = self._fit(frame_bgr)
        if self.color == "RGB":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif self.color == "GRAY":
            img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)[:, :, None]
        x = (img.astype(np.float32) - self.mean) / self.std
        dtype = self.inp["dtype"]
        if np.issubdtype(dtype, np.integer):
            scale, zero = self.inp["quantization"]
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale) + zero if scale else np.round(x), info.min, info.max)
        self.interpreter.set_tensor(self.inp["index"], x.astype(dtype)[None])
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.out["index"]).reshape(-1)
        scale, zero = self.out["quantization"]
        y = (y.astype(np.float32) - zero) * scale if scale else y.astype(np.float32)
        logits = self.output == "logits" or (self.output == "auto" and (y.min() < 0 or abs(y.sum() - 1) > 0.02))
        if logits:
            e = np.exp(y - y.max())
            y = e / e.sum()
        return y


# -- the camera --------------------------------------------------------------------------------------------------
class Camera:
    """A capture thread that keeps only the newest frame; re-opens a lost camera with backoff."""

    def __init__(self, spec: str, width: int | None, height: int | None, fps: float | None, stop: threading.Event):
        self.spec, self.size, self.fps, self.stop = spec, (width or 640, height or 480), fps, stop
        self.requested = (width, height, fps)
        self.cond, self.frame, self.error, self.lost = threading.Condition(), None, None, False
        self.number = 0
        self.opened = self._open()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _open(self):
        if self.spec.startswith("picamera"):
            from picamera2 import Picamera2
            cam = Picamera2()
            controls = {"FrameRate": self.fps} if self.fps else {}
            cam.configure(cam.create_video_configuration(main={"size": self.size, "format": "RGB888"},
                                                         controls=controls))  # RGB888 is B,G,R in memory
            cam.start()
            return cam
        cap = cv2.VideoCapture(int(self.spec) if self.spec.isdigit() else self.spec)
        if not cap.isOpened():
            raise RuntimeError(f"{self.spec}: cannot open the camera")
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        for prop, value in zip((cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS),
                               self.requested):
            if value:
                cap.set(prop, value)
        return cap

    def _read(self):
        if self.opened is None:
            return None
        if hasattr(self.opened, "capture_array"):
            return self.opened.capture_array("main")
        ok, frame = self.opened.read()
        return frame if ok else None

    def _close(self) -> None:
        cam, self.opened = self.opened, None
        if cam is None:
            return
        if hasattr(cam, "capture_array"):
            cam.stop()
            cam.close()
        else:
            cam.release()

    def _loop(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                frame = self._read()
            except Exception:  # a vanished device raises in some backends
                frame = None
            if frame is None:
                failures += 1
                self._close()
                if failures > 5:
                    self.lost = True
                    break
                if self.stop.wait(min(0.5 * 2 ** failures, 10)):
                    break
                try:
                    self.opened = self._open()
                except Exception as exc:
                    self.error = exc
                continue
            failures, self.error = 0, None
            with self.cond:
                self.frame, self.ts = frame, time.monotonic()
                self.number += 1
                self.cond.notify()
        with self.cond:
            self.stop.set()
            self.cond.notify()

    def close(self) -> None:
        """Stop the capture thread, then release the camera (never while the thread is inside a read)."""
        self.stop.set()
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self._close()

    def newest(self):
        """(frame number, capture time, frame), waiting for a frame newer than the last one taken."""
        with self.cond:
            while self.frame is None and not self.stop.is_set():
                self.cond.wait(0.5)
            frame, self.frame = self.frame, None
            return (self.number, self.ts, frame) if frame is not None else None


def main() -> int:
    ap = argparse.ArgumentParser(description="Classify camera frames with an edgeclf .tflite model.")
    ap.add_argument("model")
    # the names are edgeclf run's where the two overlap (--source, --device, --top-k, --threads, --headless)
    ap.add_argument("--source", "-s", default="0", help="0, /dev/video0, picamera2, a video file or an rtsp:// URL")
    ap.add_argument("--width", type=int), ap.add_argument("--height", type=int), ap.add_argument("--fps", type=float)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("EDGECLF_THREADS", 0)) or None)
    ap.add_argument("--device", choices=("cpu", "coral"), default="cpu",
                    help="coral: a Coral USB Accelerator (an _edgetpu.tflite model)")
    ap.add_argument("--top-k", type=int, default=5)
    ap.add_argument("--threshold", type=float, default=0.0)
    ap.add_argument("--labels"), ap.add_argument("--mean", type=float, nargs="+"), ap.add_argument("--std", type=float, nargs="+")
    ap.add_argument("--headless", action="store_true", help="no window: one JSON object per frame on stdout")
    ap.add_argument("--max-frames", type=int)
    args = ap.parse_args()

    clf = Classifier(args.model, args.threads, args.device == "coral", args.labels, args.mean, args.std)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cam = Camera(args.source, args.width, args.height, args.fps, stop)
    except Exception as exc:
        print(f"classify_camera: error: {exc}", file=sys.stderr)
        return 1
    show = not args.headless and bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    done, t_last, fps = 0, time.monotonic(), 0.0
    while not stop.is_set() and (args.max_frames is None or done < args.max_frames):
        item = cam.newest()
        if item is None:
            break
        number, ts, frame = item
        t0 = time.monotonic()
        probs = clf.probabilities(frame)
        t1 = time.monotonic()
        fps = 0.9 * fps + 0.1 / max(t1 - t_last, 1e-6) if done else 0.0
        t_last, done = t1, done + 1
        top = np.argsort(-probs)[:args.top_k]
        best = int(top[0]) if probs[top[0]] >= args.threshold else -1
        label = clf.labels[best] if best >= 0 else "unknown"
        if show:
            cv2.putText(frame, f"{label} {probs[top[0]]:.0%}  {fps:.1f} fps", (8, 30), cv2.FONT_HERSHEY_SIMPLEX,
                        0.8, (255, 255, 255), 2, cv2.LINE_AA)
            try:
                cv2.imshow("edgeclf", frame)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    break
            except cv2.error:  # opencv-python-headless: no GUI
                show = False
        else:
            print(json.dumps({"frame": number, "ts": round(time.time() - (t1 - ts), 6), "index": best,
                              "label": label, "score": round(float(probs[top[0]]), 6),
                              "infer_ms": round((t1 - t0) * 1e3, 3), "latency_ms": round((t1 - ts) * 1e3, 3),
                              "fps": round(fps, 2),
                              "top_k": [{"index": int(i), "label": clf.labels[i], "score": round(float(probs[i]), 6)}
                                        for i in top]}), flush=True)
    cam.close()
    if cam.lost:  # non-zero so that systemd's Restart=on-failure starts it again
        print(f"classify_camera: error: {args.source}: camera lost and 5 reconnect attempts failed"
              f"{f' ({cam.error})' if cam.error else ''}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
