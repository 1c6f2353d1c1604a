"""Untrusted input against the image decoder and the HTTP API, in-process: fuzzed bytes and requests
(``EDGECLF_FUZZ_EXAMPLES`` each, default 100), the decode worker's CPU bound, NaN scores, the rate limit,
credential redaction and a stalled camera."""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeclf.camera.sources import redact_url
from edgeclf.runtime import Runtime
from edgeclf.runtime.decode_pool import DecodeFailed, DecodePool
from edgeclf.serve.app import HostPolicy, ServeOptions, create_app
from edgeclf.serve.live import LiveFeed
from edgeclf.serve.metrics import serve_metrics

from fuzz_targets import InProcessApp, fuzz_decode, fuzz_request, progressive_scan_bomb

EXAMPLES = int(os.environ.get("EDGECLF_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
PNG_HEADERS = [(b"host", b"127.0.0.1:8080"), (b"content-type", b"image/png")]


def _seeds() -> list[bytes]:
    img = np.random.default_rng(3).integers(0, 256, (24, 40, 3), np.uint8)
    return [cv2.imencode(ext, img, params)[1].tobytes() for ext, params in
            [(".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".png", []), (".webp", []), (".bmp", [])]]


SEEDS = _seeds()


@st.composite
def mutated_images(draw: st.DrawFn) -> bytes:
    """A real image with bytes overwritten, inserted, or cut off; or plain random bytes."""
    if draw(st.booleans()) and draw(st.booleans()):
        return draw(st.binary(max_size=2000))
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "insert", "cut"]))
        if action == "flip":
            data[at] = draw(st.integers(0, 255))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[at:]
            if not data:
                break
    return bytes(data)


@pytest.fixture(scope="module")
def app(tiny_tflite):
    server = InProcessApp(create_app(Runtime(tiny_tflite), None, ServeOptions(rate=0, decode_seconds=2.0)))
    yield server
    server.close()


@FUZZ
@given(mutated_images())
def test_fuzz_decode(data):
    fuzz_decode(data)


QUERIES = st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"top_k=2", b"top_k=0", b"top_k=-1", b"top_k=%C2%B2", b"top_k=\xb2", b"top_k=1e9", b"top_k=99999999999999999999",
     b"top_k=", b"top_k", b"top_k=3&top_k=x", b"token=%ff", b"%", b"&&&="]))
HEADERS = st.lists(st.tuples(st.sampled_from([b"content-type", b"origin", b"content-length", b"authorization",
                                               b"x-other"]),
                             st.one_of(st.binary(max_size=30), st.sampled_from(
                                 [b"image/png", b"image/jpeg", b"multipart/form-data; boundary=x",
                                  b"application/json", b"http://127.0.0.1:8080", b"1", b"-5"]))), max_size=4)


@FUZZ
@given(method=st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE"]),
       path=st.one_of(st.sampled_from(["/", "/healthz", "/info", "/metrics", "/live", "/stream.mjpg", "/predict",
                                       "/feedback"]), st.text(max_size=20).map(lambda t: "/" + t)),
       query=QUERIES, headers=HEADERS, body=st.one_of(mutated_images(), st.binary(max_size=200)))
def test_fuzz_requests(app, method, path, query, headers, body):
    names = {k for k, _ in headers}
    headers = [(b"host", b"127.0.0.1:8080"), *((k, v) for k, v in headers if not (k == b"content-length"))]
    if b"content-type" not in names and path == "/predict":
        headers.append((b"content-type", b"application/octet-stream"))
    fuzz_request(app, method, path, query, headers, body)


@FUZZ
@given(ctype=st.sampled_from([b"image/png", b"image/jpeg", b"image/webp", b"image/bmp", b"application/octet-stream"]),
       query=QUERIES, body=mutated_images())
def test_fuzz_uploads(app, ctype, query, body):
    headers = [(b"host", b"127.0.0.1:8080"), (b"content-type", ctype)]
    assert fuzz_request(app, "POST", "/predict", query, headers, body) in (200, 400, 413, 415, 422)


def test_query_values_of_every_route_get_400_not_500(app):
    png = SEEDS[2]
    for query in [b"top_k=%C2%B2", b"top_k=\xb2\xff", b"top_k=99999999999999999999", b"top_k=-1", b"top_k="]:
        status, _, body = app.request("POST", "/predict", query, PNG_HEADERS, png)
        assert status == 400 and b"top_k must be a positive integer" in body, (query, status, body)
    for path in ["/", "/healthz", "/info", "/metrics", "/live"]:
        assert app.request("GET", path, b"top_k=%ff&x=\xff&token=\x00")[0] == 200


def test_decode_worker_cpu_bound_and_replacement():
    """A decode over its CPU time kills that worker (422 in the server); a new one takes its place."""
    slow = progressive_scan_bomb(side=6000, scans=90)   # under the scan limit, ~0.6 s of CPU at 36 megapixels
    pool = DecodePool(max_pixels=40_000_000, workers=1, cpu_seconds=0.2)
    pool.start()
    try:
        t0 = time.monotonic()
        with pytest.raises(DecodeFailed, match="over 0.2 s of CPU time"):
            pool.decode(slow)
        assert time.monotonic() - t0 < 10
        image, header = pool.decode(SEEDS[0])
        assert image.shape == (24, 40, 3) and header.format == "jpeg"
    finally:
        pool.close()


def test_nan_scores_are_a_clear_500(tiny_tflite):
    runtime = Runtime(tiny_tflite)
    runtime.probabilities = lambda image: np.full(4, np.nan, np.float32)
    server = InProcessApp(create_app(runtime, None, ServeOptions()))
    try:
        status, headers, body = server.request("POST", "/predict", b"", PNG_HEADERS, SEEDS[2])
        assert status == 500 and headers["content-type"] == "application/json"
        assert b"model produced NaN scores" in body
        assert server.request("GET", "/healthz")[0] == 200
    finally:
        server.close()


def test_rate_limit_per_client(tiny_tflite):
    server = InProcessApp(create_app(Runtime(tiny_tflite), None, ServeOptions(rate=0.01, burst=2)))
    try:
        statuses = [server.request("POST", "/predict", b"", PNG_HEADERS, SEEDS[2])[0] for _ in range(3)]
        status, headers, body = server.request("POST", "/predict", b"", PNG_HEADERS, SEEDS[2])
        assert statuses == [200, 200, 429] and status == 429 and int(headers["retry-after"]) >= 1
        assert b"too many uploads from this client" in body
        assert server.request("POST", "/predict", b"", PNG_HEADERS, SEEDS[2], client="10.0.0.7")[0] == 200
    finally:
        server.close()


def test_host_policy():
    local, network = HostPolicy(True), HostPolicy(False, ("edge.example",))
    assert local.allows("localhost") and local.allows("127.0.0.1") and not local.allows("192.168.1.20")
    assert not local.allows("evil.example")
    assert network.allows("192.168.1.20") and network.allows("::1") and network.allows("EDGE.example")
    assert not network.allows("evil.example")


class StallingCamera:
    """A live source that gives a few frames, then hangs (a frozen stream)."""

    live, fps, name = True, 20.0, "stalling camera"

    def __init__(self) -> None:
        self.sent = 0

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray:
        self.sent += 1
        time.sleep(0.05 if self.sent < 5 else 30)
        return np.full((48, 64, 3), 90, np.uint8)

    def close(self) -> None:
        pass


def test_credentials_never_shown_and_stale_camera_is_unhealthy(tiny_tflite):
    url = "rtsp://admin:hunter2@127.0.0.1:9/stream?token=abc"
    assert redact_url(url) == "rtsp://admin:***@127.0.0.1:9/stream?token=***"
    runtime = Runtime(tiny_tflite)
    server = InProcessApp(create_app(runtime, LiveFeed(Runtime(tiny_tflite), url, serve_metrics()), ServeOptions()))
    try:
        time.sleep(0.5)
        for path in ["/healthz", "/info", "/live"]:
            body = server.request("GET", path)[2]
            assert b"hunter2" not in body and b"abc" not in body and (path == "/live" or b"admin:***@" in body), body
    finally:
        server.close()
    server = InProcessApp(create_app(runtime, LiveFeed(Runtime(tiny_tflite), StallingCamera(), serve_metrics()),
                                     ServeOptions()))
    try:
        time.sleep(0.5)
        assert server.request("GET", "/healthz")[0] == 200
        time.sleep(2.5)
        status, _, body = server.request("GET", "/healthz")
        assert status == 503 and b"no new frame for" in body
    finally:
        server.close()
