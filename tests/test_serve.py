"""``edgeclf serve`` as a user runs it: a real server process on a free loopback port, the JSON API with good and
hostile input, the token, the limits, concurrency, Prometheus output, and the page in headless Chromium."""
from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np
import pytest

from click.testing import CliRunner

from edgeclf.cli import main
from edgeclf.errors import EdgeclfError
from edgeclf.fileio import atomic_write_bytes
from edgeclf.runtime import Runtime
from edgeclf.runtime.images import ImageTooLarge, UnsupportedImage, decode_untrusted, read_header
from edgeclf.serve.app import check_exposure
from edgeclf.serve.live import LiveFeed
from edgeclf.serve.metrics import serve_metrics
from edgeclf.camera.sources import SourceError

from conftest import CLASSES
from fuzz_targets import hidden_frame_jpeg, png_declaring, progressive_scan_bomb

TOKEN = "s3cret-test-token"
FOLDER_FPS = 10
HEADER_TIMEOUT_S = 3
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
SCREENSHOT_ENV = "EDGECLF_SCREENSHOT"  # where the page test saves its screenshot (benchmarks/serve_page.py sets it)


# -- a server process ----------------------------------------------------------------------------------
class Server:
    """``python -m edgeclf serve ... --port 0``; the URL is read from its first line of output."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "edgeclf", "serve", *args, "--host", "127.0.0.1",
                                      "--port", "0"], stdout=subprocess.PIPE, stderr=self.log, text=True)
        line = self._first_line(timeout=60)
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, f"no URL in {line!r}; log: {log.read_text()}"
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"

    def _first_line(self, timeout: float) -> str:
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0] if out else ""

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
             token: str | None = None, timeout: float = 20, chunked: bool = False) -> tuple[int, http.client.HTTPMessage, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        try:
            conn.request(method, path, body=body, headers=h, encode_chunked=chunked)
            r = conn.getresponse()
            return r.status, r.headers, r.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, **kw) -> tuple[int, dict]:
        status, headers, data = self.call(method, path, **kw)
        assert headers["Content-Type"].startswith("application/json"), (status, headers, data[:200])
        return status, json.loads(data)

    def rss_peak_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1))

    def stop(self) -> int:
        """SIGTERM; the exit code (0 = clean shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def multipart(fields: dict[str, tuple[str, bytes, str] | str], boundary: str = "edgeclf-test-boundary") -> tuple[bytes, str]:
    parts = []
    for name, value in fields.items():
        if isinstance(value, tuple):
            filename, data, ctype = value
            head = f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\nContent-Type: {ctype}\r\n'
        else:
            head, data = f'Content-Disposition: form-data; name="{name}"\r\n', value.encode()
        parts.append(f"--{boundary}\r\n{head}\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def jpeg_declaring(jpeg: bytes, width: int, height: int) -> bytes:
    """A real JPEG with its frame header patched to declare width x height."""
    at = jpeg.find(b"\xff\xc0")
    assert at > 0
    return jpeg[:at + 5] + struct.pack(">HH", height, width) + jpeg[at + 9:]


def frame(i: int) -> np.ndarray:
    """A 320x240 test frame: a colour and a disc position that change with i."""
    img = np.empty((240, 320, 3), np.uint8)
    img[:] = ((i * 50) % 256, 90 + i * 20, 220 - i * 25)
    cv2.circle(img, (50 + i * 45, 120), 35, (255, 255, 255), -1)
    return img


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("serve_media")
    (d / "frames").mkdir()
    for i in range(6):
        cv2.imwrite(str(d / "frames" / f"{i:02d}.png"), frame(i))
    cv2.imwrite(str(d / "upload.png"), frame(3))
    cv2.imwrite(str(d / "upload.jpg"), frame(1))
    return {"frames": d / "frames", "png": d / "upload.png", "jpg": d / "upload.jpg", "dir": d}


@pytest.fixture(scope="module")
def server(tiny_tflite, media, tmp_path_factory):
    samples = tmp_path_factory.mktemp("samples")
    srv = Server([str(tiny_tflite), "--source", str(media["frames"]), "--fps", str(FOLDER_FPS), "--token", TOKEN,
                  "--samples", str(samples), "--header-timeout", str(HEADER_TIMEOUT_S)], media["dir"] / "server.log")
    srv.samples = samples
    wait_for(lambda: srv.json("GET", "/healthz")[1]["camera"] == "running", timeout=30)
    yield srv
    viewer = threading.Thread(target=read_mjpeg, args=(srv, 10**6), daemon=True)  # open during shutdown
    viewer.start()
    wait_for(lambda: b"edgeclf_stream_clients 1" in srv.call("GET", "/metrics", token=TOKEN)[2])
    t0 = time.monotonic()
    assert srv.stop() == 0, (media["dir"] / "server.log").read_text()
    assert time.monotonic() - t0 < 8


def wait_for(predicate, timeout: float = 10.0, step: float = 0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


# -- unit: the untrusted-image decoder and the exposure warning --------------------------------------------
def test_header_sizes_match_the_decoder_for_every_accepted_format():
    img = frame(2)[:37, :53]
    for ext, params in [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []),
                        (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
                        (".bmp", [])]:
        data = cv2.imencode(ext, img, params)[1].tobytes()
        header = read_header(data)
        decoded, _ = decode_untrusted(data, max_pixels=53 * 37)
        assert (header.width, header.height) == (53, 37) and decoded.shape == (37, 53, 3), (ext, params)
    with pytest.raises(ImageTooLarge):
        decode_untrusted(cv2.imencode(".png", img)[1].tobytes(), max_pixels=53 * 37 - 1)
    with pytest.raises(ImageTooLarge, match="30000x30000"):
        decode_untrusted(png_declaring(30000, 30000), max_pixels=40_000_000)
    with pytest.raises(UnsupportedImage):
        decode_untrusted(b"GIF89a" + bytes(100), max_pixels=10**6)


def test_network_exposure_needs_a_token_or_insecure(tiny_tflite):
    for host in ("0.0.0.0", "::", "192.168.1.20", "edge.local"):
        with pytest.raises(EdgeclfError, match="without --token"):
            check_exposure(host, None, insecure=False)
        assert "--insecure" in check_exposure(host, None, insecure=True)
        assert check_exposure(host, "t", insecure=False) is None
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert check_exposure(host, None, insecure=False) is None
    res = CliRunner().invoke(main, ["serve", str(tiny_tflite), "--host", "0.0.0.0", "--port", "0"])
    assert res.exit_code == 1 and "refusing to serve on 0.0.0.0 without --token" in res.output


def test_cli_errors_are_one_line(tiny_tflite, tmp_path):
    (tmp_path / "empty").mkdir()
    res = CliRunner().invoke(main, ["serve", str(tiny_tflite), "--source", str(tmp_path / "empty"), "--port", "0"])
    assert res.exit_code == 1 and "no images in this folder" in res.output
    code = "import sys; sys.modules['starlette'] = None; from edgeclf.cli import main; main()"
    res = subprocess.run([sys.executable, "-c", code, "serve", str(tiny_tflite)], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 1 and "needs starlette" in res.stderr and "edgeclf[serve]" in res.stderr
    assert "Traceback" not in res.stderr


class UnpluggedCamera:
    """A live source that refuses to open until ``plugged`` is set, then gives frames."""

    live, fps, name = True, None, "test camera"

    def __init__(self) -> None:
        self.plugged, self.sent = threading.Event(), 0

    def open(self) -> None:
        if not self.plugged.is_set():
            raise SourceError(f"{self.name}: not there")

    def read(self) -> np.ndarray:
        time.sleep(0.01)
        self.sent += 1
        return frame(self.sent % 6)

    def close(self) -> None:
        pass


def test_lost_camera_is_reported_and_retried(tiny_tflite):
    camera = UnpluggedCamera()
    metrics = serve_metrics()

    async def scenario() -> None:
        feed = LiveFeed(Runtime(tiny_tflite), camera, metrics)
        feed.start()
        try:
            while not feed.status.startswith("error"):
                await asyncio.sleep(0.02)
            assert not feed.healthy and "not there" in feed.status and feed.latest() is None
            camera.plugged.set()
            while feed.frames < 3:
                await asyncio.sleep(0.02)
            assert feed.healthy and feed.status == "running" and feed.latest().label in CLASSES
        finally:
            feed.stop()
        assert feed.status == "stopped"

    asyncio.run(asyncio.wait_for(scenario(), 20))
    assert metrics.value("edgeclf_errors_total", kind="camera") >= 1


# -- the API ---------------------------------------------------------------------------------------------
def test_token_guards_everything_but_healthz(server):
    assert server.json("GET", "/healthz") == (200, {"status": "ok", "camera": "running"})
    for method, path in [("GET", "/"), ("GET", "/info"), ("GET", "/metrics"), ("GET", "/live"),
                         ("GET", "/stream.mjpg"), ("POST", "/predict"), ("POST", "/feedback"), ("GET", "/nope")]:
        status, body = server.json(method, path)
        assert status == 401 and "token" in body["error"], (path, status, body)
        assert server.json(method, path, token="wrong")[0] == 401
    assert server.call("GET", "/info", token=TOKEN)[0] == 200
    assert server.call("GET", f"/info?token={TOKEN}")[0] == 200
    status, headers, page = server.call("GET", f"/?token={TOKEN}")
    assert status == 200 and b'id="stream"' in page and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"


def test_host_header_must_be_local(server):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not reach the API."""
    status, body = server.json("GET", "/healthz", headers={"Host": "evil.example"})
    assert status == 400 and "Host" in body["error"]
    assert server.call("GET", "/healthz", headers={"Host": f"localhost:{server.port}"})[0] == 200


def test_info_describes_model_and_server(server, tiny_tflite):
    status, info = server.json("GET", "/info", token=TOKEN)
    assert status == 200 and info["format"] == "tflite" and info["metadata"]["labels"] == CLASSES
    assert info["server"]["camera"]["source"].endswith("frames") and info["server"]["samples"] is True
    assert info["server"]["max_upload_bytes"] == 10 * 2**20 and info["server"]["token_required"] is True


def test_predict_raw_and_multipart_match_the_runtime(server, media, tiny_tflite):
    png = media["png"].read_bytes()
    expected = Runtime(tiny_tflite).predict(media["png"], top_k=4)
    status, raw = server.json("POST", "/predict", body=png, headers={"Content-Type": "image/png"}, token=TOKEN)
    assert status == 200
    assert [p["label"] for p in raw["predictions"]] == [p.label for p in expected]
    assert [p["score"] for p in raw["predictions"]] == pytest.approx([p.score for p in expected], abs=1e-5)
    assert raw["image"] == {"format": "png", "width": 320, "height": 240} and raw["infer_ms"] > 0
    body, ctype = multipart({"note": "hi", "image": ("a.png", png, "image/png")})
    status, form = server.json("POST", "/predict?top_k=2", body=body, headers={"Content-Type": ctype}, token=TOKEN)
    assert status == 200 and form["predictions"] == raw["predictions"][:2] and form["id"] != raw["id"]
    status, jpg = server.json("POST", "/predict", body=media["jpg"].read_bytes(),
                              headers={"Content-Type": "application/octet-stream"}, token=TOKEN)
    assert status == 200 and jpg["image"]["format"] == "jpeg"


def test_bad_inputs_get_4xx_json_and_the_server_lives(server, media):
    png = media["png"].read_bytes()
    no_file, no_file_type = multipart({"note": "no image here"})
    cases = [
        ({"Content-Type": "text/plain"}, b"hello", "/predict", 415),
        ({}, png, "/predict", 415),                                             # no content type
        ({"Content-Type": "application/json"}, b'{"image": 1}', "/predict", 415),
        ({"Content-Type": "image/png"}, b"not an image at all", "/predict", 415),
        ({"Content-Type": "image/gif"}, b"GIF89a" + bytes(64), "/predict", 415),
        ({"Content-Type": "image/png"}, png[:200], "/predict", 400),             # truncated
        ({"Content-Type": "image/jpeg"}, b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "/predict", 400),
        ({"Content-Type": "image/png"}, b"", "/predict", 400),
        ({"Content-Type": no_file_type}, no_file, "/predict", 400),
        ({"Content-Type": "multipart/form-data"}, b"--x\r\n\r\n", "/predict", 400),  # no boundary
        ({"Content-Type": "image/png"}, png, "/predict?top_k=abc", 400),
        ({"Content-Type": "image/png"}, png, "/predict?top_k=0", 400),
    ]
    rng = np.random.default_rng(0)
    for _ in range(12):  # random bytes, sometimes behind a real signature
        blob = rng.integers(0, 256, int(rng.integers(1, 4000)), dtype=np.uint8).tobytes()
        prefix = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 "][int(rng.integers(5))]
        cases.append(({"Content-Type": "application/octet-stream"}, prefix + blob, "/predict", None))
    for headers, body, path, want in cases:
        status, out = server.json("POST", path, body=body, headers=headers, token=TOKEN)
        assert (status == want) if want else (400 <= status < 500), (headers, body[:40], status, out)
        assert isinstance(out["error"], str) and out["error"]
    assert server.json("GET", "/predict", token=TOKEN)[0] == 405
    assert server.json("GET", "/healthz")[0] == 200


def test_upload_size_limit(server):
    big = bytes(10 * 2**20 + 1)
    status, out = server.json("POST", "/predict", body=big, headers={"Content-Type": "image/png"}, token=TOKEN)
    assert status == 413 and "10 MB" in out["error"]
    chunks = (bytes(2**20) for _ in range(11))  # no Content-Length: the limit holds on the bytes received
    status, out = server.json("POST", "/predict", body=chunks, headers={"Content-Type": "image/jpeg"}, token=TOKEN,
                              chunked=True)
    assert status == 413
    body, ctype = multipart({"image": ("big.png", big, "image/png")})
    assert server.json("POST", "/predict", body=body, headers={"Content-Type": ctype}, token=TOKEN)[0] == 413


def test_decompression_bombs_are_refused_before_decoding(server, media):
    """0.9 gigapixels is under OpenCV's own default limit (2^30): without the header check it would allocate 2.7 GB."""
    before = server.rss_peak_kb()
    jpeg = media["jpg"].read_bytes()
    for bomb, ctype in [(png_declaring(30000, 30000), "image/png"), (jpeg_declaring(jpeg, 30000, 30000), "image/jpeg")]:
        assert len(bomb) < 20_000
        status, out = server.json("POST", "/predict", body=bomb, headers={"Content-Type": ctype}, token=TOKEN)
        assert status == 413 and "30000x30000" in out["error"] and "megapixels" in out["error"]
    assert server.rss_peak_kb() - before < 100_000
    status, out = server.json("POST", "/predict", body=png_declaring(64, 8), headers={"Content-Type": "image/png"},
                              token=TOKEN)
    assert status == 200 and out["image"]["width"] == 64


def process_tree_peak_kb(pid: int) -> dict[int, int]:
    """Peak RSS (VmHWM, kB) of ``pid`` and each of its child processes (the decoder workers)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    peaks = {}
    for p in [pid, *map(int, children)]:
        with contextlib.suppress(FileNotFoundError):
            peaks[p] = int(re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{p}/status").read_text()).group(1))
    return peaks


def test_lying_and_costly_images_are_refused_with_bounded_memory_and_time(server, media):
    """Bombs whose declared size lies, progressive-scan bombs, PNG bombs and truncated files: refused quickly,
    and neither the server nor a decoder worker grows (the 48-megapixel bomb cost 340 MB and 1 s before)."""
    before = process_tree_peak_kb(server.proc.pid)
    real = cv2.imencode(".jpg", np.full((6000, 8000, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()
    fake_after_end = real + b"\xff\xc0\x00\x11\x08\x00\x10\x00\x10\x03" + bytes(9)
    png = media["png"].read_bytes()
    cases = [(hidden_frame_jpeg(), 400, "two frame headers"), (fake_after_end, 413, "8000x6000"),
             (progressive_scan_bomb(), 413, "scans"), (png_declaring(30000, 30000), 413, "30000x30000"),
             (real[:len(real) // 3], 413, "8000x6000"), (png[:len(png) // 2], 400, "truncated"),
             (media["jpg"].read_bytes()[:-200], 400, "not a decodable JPEG")]
    for body, want, words in cases:
        t0 = time.monotonic()
        status, out = server.json("POST", "/predict", body=body, headers={"Content-Type": "image/jpeg"}, token=TOKEN)
        assert status == want and (words is None or words in out["error"]), (status, out)
        assert time.monotonic() - t0 < 2.0
    after = process_tree_peak_kb(server.proc.pid)
    assert len(after) >= 3, after  # the server and its two decoder workers
    growth = {p: after[p] - before.get(p, 0) for p in after}
    assert max(growth.values()) < 60_000, growth


def test_cross_origin_writes_are_refused(server, media):
    png = {"Content-Type": "image/png"}
    status, out = server.json("POST", "/predict", body=media["png"].read_bytes(), token=TOKEN,
                              headers={**png, "Origin": "http://evil.example"})
    assert status == 403 and "cross-origin POST refused" in out["error"]
    assert server.json("POST", "/feedback", body=b"{}", token=TOKEN, headers={"Origin": "null"})[0] == 403
    status, _ = server.json("POST", "/predict", body=media["png"].read_bytes(), token=TOKEN,
                            headers={**png, "Origin": f"http://127.0.0.1:{server.port}"})
    assert status == 200


def test_slow_clients_do_not_block_uploads(server, media):
    """500 connections sending their headers a byte at a time: an upload is still answered within 5 s, and the
    slow ones are cut off with a JSON 408 once the header deadline passes. Only 127.0.0.1, bounded in time."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 700:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    slow: list[socket.socket] = []
    try:
        for _ in range(500):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            slow.append(sock)
        t_open = time.monotonic()
        stop = threading.Event()

        def trickle() -> None:
            while not stop.wait(0.25):
                for sock in slow:
                    with contextlib.suppress(OSError):
                        sock.send(b"a")

        dripper = threading.Thread(target=trickle, daemon=True)
        dripper.start()
        t0 = time.monotonic()
        status, out = server.json("POST", "/predict", body=media["png"].read_bytes(), token=TOKEN, timeout=5,
                                  headers={"Content-Type": "image/png"})
        upload_s = time.monotonic() - t0
        assert status == 200 and upload_s < 5, (status, upload_s)
        time.sleep(max(0.0, HEADER_TIMEOUT_S + 1 - (time.monotonic() - t_open)))
        stop.set()
        dripper.join()
        answers = [sock.recv(4096) for sock in slow[:20]]
        assert all(a.startswith(b"HTTP/1.1 408") and b"request headers not received" in a for a in answers), answers[:2]
        print(f"upload with 500 slow connections open: {upload_s:.2f} s")
    finally:
        for sock in slow:
            sock.close()
    assert server.json("GET", "/healthz")[0] == 200


def read_mjpeg(server: Server, count: int, token: str = TOKEN) -> list[bytes]:
    """The first ``count`` JPEG parts of /stream.mjpg (fewer if the server ends the stream)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    conn.request("GET", f"/stream.mjpg?token={token}")
    r = conn.getresponse()
    assert r.status == 200 and r.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
    parts = []
    try:
        while len(parts) < count:
            boundary = r.readline()
            if not boundary:
                break
            assert boundary == b"--frame\r\n"
            headers = {}
            while (line := r.readline()) != b"\r\n":
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            parts.append(r.read(int(headers["content-length"])))
            assert r.read(2) == b"\r\n"
    finally:
        conn.close()
    return parts


def test_mjpeg_stream_shows_changing_annotated_frames(server):
    parts = read_mjpeg(server, 4)
    assert len(parts) == 4
    images = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(img.shape == (240, 320, 3) for img in images)
    assert any(np.abs(a.astype(int) - b).mean() > 5 for a, b in zip(images, images[1:]))


def test_many_clients_do_not_slow_the_camera_loop(server, media):
    png = media["png"].read_bytes()
    viewers = [threading.Thread(target=read_mjpeg, args=(server, 15), daemon=True) for _ in range(6)]
    for v in viewers:
        v.start()
    wait_for(lambda: b"edgeclf_stream_clients 6" in server.call("GET", "/metrics", token=TOKEN)[2])
    start = server.json("GET", "/live", token=TOKEN)[1]["frames_total"]
    t0 = time.monotonic()
    jobs = [("POST", "/predict", png, {"Content-Type": "image/png"})] * 40 + [("GET", "/live", None, None)] * 20 \
        + [("GET", "/info", None, None)] * 10 + [("GET", "/metrics", None, None)] * 10
    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(lambda j: server.call(j[0], j[1], body=j[2], headers=j[3], token=TOKEN)[0], jobs))
    assert statuses == [200] * len(jobs)
    for v in viewers:
        v.join(timeout=20)
    status, live = server.json("GET", "/live", token=TOKEN)
    elapsed = time.monotonic() - t0
    # the folder is paced at FOLDER_FPS; the loop kept that pace while 6 viewers and 16 callers were served
    assert live["frames_total"] - start >= 0.7 * FOLDER_FPS * elapsed, (live, elapsed)
    assert live["fps"] >= 0.7 * FOLDER_FPS


def parse_prometheus(text: str) -> tuple[dict[str, str], dict[str, float]]:
    """TYPE declarations and samples; asserts every line is well-formed exposition format."""
    types, samples = {}, {}
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$')
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line.startswith("# HELP "):
            continue
        else:
            m = sample.match(line)
            assert m, f"malformed metrics line: {line!r}"
            samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return types, samples


def test_metrics_are_prometheus_text(server):
    server.call("POST", "/predict", body=b"junk", headers={"Content-Type": "text/plain"}, token=TOKEN)
    status, headers, first = server.call("GET", "/metrics", token=TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    types, samples = parse_prometheus(first.decode())
    assert types["edgeclf_frames_total"] == "counter" and types["edgeclf_inference_seconds"] == "histogram"
    assert samples['edgeclf_errors_total{kind="unsupported"}'] >= 1
    assert samples['edgeclf_errors_total{kind="unauthorized"}'] >= 1
    for source in ("camera", "upload"):
        buckets = [v for k, v in samples.items() if k.startswith(f'edgeclf_inference_seconds_bucket{{source="{source}"')]
        assert buckets == sorted(buckets) and buckets[-1] == samples[f'edgeclf_inference_seconds_count{{source="{source}"}}']
        assert samples[f'edgeclf_inference_seconds_sum{{source="{source}"}}'] > 0
    time.sleep(3 / FOLDER_FPS)
    _, later = parse_prometheus(server.call("GET", "/metrics", token=TOKEN)[2].decode())
    assert later["edgeclf_frames_total"] > samples["edgeclf_frames_total"]


def test_feedback_saves_labelled_samples(server, media):
    png = media["png"].read_bytes()
    up = server.json("POST", "/predict", body=png, headers={"Content-Type": "image/png"}, token=TOKEN)[1]
    js = {"Content-Type": "application/json"}
    status, saved = server.json("POST", "/feedback", body=json.dumps({"id": up["id"], "label": "dog"}).encode(),
                                headers=js, token=TOKEN)
    assert status == 201 and saved["label"] == "dog" and saved["predicted"] == up["predictions"][0]["label"]
    assert (server.samples / saved["saved"]).read_bytes() == png and saved["saved"].startswith("dog/")
    live = server.json("GET", "/live", token=TOKEN)[1]
    status, saved = server.json("POST", "/feedback", body=json.dumps({"id": live["id"], "label": live["label"]}).encode(),
                                headers=js, token=TOKEN)
    assert status == 201 and saved["saved"].startswith(f"{live['label']}/")
    assert cv2.imread(str(server.samples / saved["saved"])).shape == (240, 320, 3)
    for body, headers, want in [
        (json.dumps({"id": up["id"], "label": "../../etc"}).encode(), js, 400),
        (json.dumps({"id": "up-0000", "label": "dog"}).encode(), js, 404),
        (b"{not json", js, 400),
        (json.dumps({"id": up["id"]}).encode(), js, 400),
        (f"id={up['id']}&label=dog".encode(), {"Content-Type": "application/x-www-form-urlencoded"}, 415),  # CSRF-able
    ]:
        assert server.json("POST", "/feedback", body=body, headers=headers, token=TOKEN)[0] == want
    files = sorted(p.relative_to(server.samples).parts[0] for p in server.samples.rglob("*") if p.is_file())
    assert len(files) == 2 and set(files) <= set(CLASSES)  # nothing else written, no temporary files left


def test_upload_only_server_and_clean_shutdown(tiny_tflite, media, tmp_path):
    srv = Server([str(tiny_tflite)], tmp_path / "server.log")
    try:
        assert srv.json("GET", "/healthz") == (200, {"status": "ok", "camera": "none"})
        assert srv.json("GET", "/live") == (200, {"camera": "none"})
        assert srv.json("GET", "/stream.mjpg")[0] == 404
        status, out = srv.json("POST", "/predict", body=media["png"].read_bytes(), headers={"Content-Type": "image/png"})
        assert status == 200 and out["id"] is None and len(out["predictions"]) == 4
        status, out = srv.json("POST", "/feedback", body=b'{"id": "x", "label": "cat"}',
                               headers={"Content-Type": "application/json"})
        assert status == 404 and "--samples" in out["error"]
        assert srv.json("GET", "/info")[1]["server"]["camera"] is None
    finally:
        t0 = time.monotonic()
        assert srv.stop() == 0, (tmp_path / "server.log").read_text()
    assert time.monotonic() - t0 < 5


# -- the page in a real browser --------------------------------------------------------------------------
def test_page_in_headless_chromium(server, media, tmp_path):
    if not os.path.exists(CHROMIUM) or shutil.which("chromium") is None:
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        headless=True, args=CHROMIUM_FLAGS,
                                                        viewport={"width": 1200, "height": 760})
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{server.url}/?token={TOKEN}")
            page.wait_for_function("() => document.querySelectorAll('#live-topk li').length === 4")
            assert "tiny.tflite" in page.inner_text("#model-name")
            assert "cat, dog, bird, fish" in page.inner_text("#model-info")
            # the stream plays: the frame counter advances and the picture changes
            page.wait_for_function("() => document.getElementById('stream').naturalWidth === 320")
            first_count, first_shot = page.inner_text("#frame-count"), page.locator("#stream").screenshot()
            page.wait_for_function(f"() => Number(document.getElementById('frame-count').textContent) > {first_count}")
            page.wait_for_timeout(300)
            assert page.locator("#stream").screenshot() != first_shot
            assert float(page.inner_text("#fps")) > 0
            # an upload shows its result, and a thumbs-up stores it
            page.set_input_files("#upload-file", str(media["png"]))
            page.click("#upload-form button[type=submit]")
            page.wait_for_function("() => document.querySelectorAll('#upload-topk li').length === 4")
            expected = server.json("POST", "/predict", body=media["png"].read_bytes(),
                                   headers={"Content-Type": "image/png"}, token=TOKEN)[1]
            assert page.inner_text("#upload-topk li .name") == expected["predictions"][0]["label"]
            assert "320×240 png" in page.inner_text("#upload-msg")
            page.click("#upload-feedback button:has-text('right')")
            page.wait_for_function("() => document.querySelector('#upload-feedback .msg').textContent.startsWith('saved')")
            assert not errors, errors
            atomic_write_bytes(os.environ.get(SCREENSHOT_ENV) or tmp_path / "serve_page.png",
                               page.screenshot(full_page=True))
        finally:
            browser.close()
    # without the token the page does not load
    assert urlsplit(server.url).hostname == "127.0.0.1" and server.call("GET", "/")[0] == 401
