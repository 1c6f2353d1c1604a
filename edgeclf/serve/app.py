"""``edgeclf serve``: a web page, an MJPEG stream and a JSON API for one model on this device.

Routes: ``GET /`` (the page), ``GET /stream.mjpg`` (annotated camera stream), ``GET /live`` (newest camera
result), ``POST /predict`` (classify an uploaded image), ``POST /feedback`` (store a judged image as a
labelled sample), ``GET /info`` (model and server), ``GET /metrics`` (Prometheus), ``GET /healthz``.

Needs the ``[serve]`` extra (Starlette, uvicorn, python-multipart); nothing else in edgeclf imports this.
Every rejected request gets a JSON ``{"error": ...}`` naming what was refused and why; an unexpected failure
gets a JSON 500 and the server keeps serving. Uploads are decoded in bounded worker processes
(``DecodePool``), rate-limited per client, and cross-origin writes are refused.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import parse_qs

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from edgeclf.errors import DataError, EdgeclfError, ImageError
from edgeclf.runtime import Runtime
from edgeclf.runtime.decode_pool import DecodeFailed, DecoderBusy, DecodePool
from edgeclf.runtime.images import EXTENSIONS, ImageTooLarge, UnsupportedImage
from edgeclf.serve.live import LiveFeed
from edgeclf.serve.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from edgeclf.serve.metrics import Metrics, serve_metrics
from edgeclf.serve.ratelimit import RateLimiter, retry_after
from edgeclf.serve.samples import Judged, RecentImages, SampleStore
from edgeclf.serve.transport import HEADER_TIMEOUT_S

RAW_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp", "application/octet-stream")
MULTIPART_OVERHEAD = 64 * 1024      # boundaries and part headers allowed on top of the image limit
FEEDBACK_MAX_BYTES = 4096
BODY_TIMEOUT_S = 15.0               # a client that takes longer to send its body frees its upload slot
SLOT_WAIT_S = 5.0                   # an upload waits this long for a free slot, then gets 503
LOOPBACK_NAMES = ("localhost",)
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
NAN_SCORES = "model produced NaN scores"
# what a refused image is, by the most specific exception: (status, metrics kind)
IMAGE_REFUSALS = ((ImageTooLarge, 413, "too_many_pixels"), (UnsupportedImage, 415, "unsupported"),
                  (DecodeFailed, 422, "decode_limit"), (DecoderBusy, 503, "busy"), (ImageError, 400, "undecodable"))
PAGE_HEADERS = {"Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
                "style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; frame-ancestors 'none'",
                "X-Frame-Options": "DENY"}
COMMON_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"),
                  (b"referrer-policy", b"no-referrer")]


@dataclass
class ServeOptions:
    """Limits and switches of a server (the CLI flags of ``edgeclf serve``)."""

    host: str = "127.0.0.1"
    token: str | None = None
    samples: Path | None = None
    max_upload_bytes: int = 10 * 2**20
    max_pixels: int = 40_000_000
    top_k: int = 5
    max_concurrent_uploads: int = 4
    allowed_hosts: tuple[str, ...] = field(default=())  # Host names accepted besides local and IP addresses
    rate: float = 10.0                                  # /predict requests per second per client (0: no limit)
    burst: int = 60                                     # ... and at once
    decode_workers: int = 2
    decode_seconds: float = 5.0                         # CPU time one upload may take to decode
    max_connections: int = 1000
    header_timeout: float = HEADER_TIMEOUT_S            # seconds a client has to send a request's headers


class ApiError(Exception):
    """A request rejected with ``status``; ``kind`` labels it in ``edgeclf_errors_total``."""

    def __init__(self, status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.headers = status, message, kind, headers


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable only from this machine."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, token: str | None, insecure: bool) -> str | None:
    """Refuse (``EdgeclfError``) a network bind without a token unless ``insecure``; then, the warning to log."""
    if token or is_loopback(host):
        return None
    if not insecure:
        raise EdgeclfError(f"refusing to serve on {host} without --token: anyone on the network could see the "
                           "camera, classify images and write samples. Pass --token (or set EDGECLF_TOKEN), "
                           "or --insecure to serve without one")
    return (f"edgeclf: warning: serving on {host} without a token (--insecure): anyone on the network can see the "
            "camera, classify images and write samples")


class HostPolicy:
    """Which Host headers are answered: the DNS-rebinding defence (a rebound name is never an IP literal).

    On loopback: local names and addresses only. On a network address: also any IP literal and this
    machine's own name (``name`` and ``name.local``). Either way, the ``allowed`` names (a reverse proxy's).
    """

    def __init__(self, loopback_only: bool, allowed: tuple[str, ...] = ()) -> None:
        self.loopback_only = loopback_only
        names = {a.lower() for a in allowed}
        if not loopback_only:
            machine = socket.gethostname().lower()
            names |= {machine, f"{machine}.local"}
        self.names = frozenset(names)

    def allows(self, hostname: str) -> bool:
        hostname = hostname.lower().rstrip(".")
        if is_loopback(hostname) or hostname in self.names:
            return True
        if self.loopback_only:
            return False
        try:
            ipaddress.ip_address(hostname)
        except ValueError:
            return False
        return True


class Guard:
    """ASGI middleware: the Host check, the Origin check on writes, the token on every path but /healthz, headers."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: HostPolicy, metrics: Metrics) -> None:
        self.app, self.metrics, self.hosts = app, metrics, hosts
        self.token = token.encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is not None:
            status, message, kind = problem
            self.metrics.inc("edgeclf_errors_total", kind=kind)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await JSONResponse({"error": message}, status, headers=headers)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + COMMON_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _problem(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = dict(scope["headers"])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(_hostname(host)):
            where = "localhost" if self.hosts.loopback_only else "its addresses and --allowed-host names"
            return 400, f"Host {host!r} not allowed (this server only answers on {where})", "host"
        origin = headers.get(b"origin")
        if origin is not None and scope["method"] not in SAFE_METHODS:
            own = f"{scope.get('scheme', 'http')}://{host}".lower()
            if origin.decode("latin-1").lower() != own:
                return (403, f"cross-origin {scope['method']} refused: Origin {origin.decode('latin-1')!r} is not "
                        f"this server ({own})", "cross_origin")
        if self.token is None or scope["path"] == "/healthz":
            return None
        auth = headers.get(b"authorization", b"")
        given = auth[7:].strip() if auth[:7].lower() == b"bearer " else b""
        if not given:
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])
            given = values[0].encode("utf-8", "replace")
        if not hmac.compare_digest(given, self.token):
            return 401, "missing or wrong token (Authorization: Bearer T, or ?token=T)", "unauthorized"
        return None


def _hostname(host_header: str) -> str:
    """The name part of a Host header: ``localhost:8080`` -> ``localhost``, ``[::1]:80`` -> ``::1``."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


def _query_int(request: Request, name: str, default: int) -> int:
    """A positive integer query parameter, or 400 naming it."""
    value = request.query_params.get(name)
    if value is None:
        return default
    if not (value.isascii() and value.isdigit()) or not 0 < int(value) < 2**31:
        raise ApiError(400, f"{name} must be a positive integer, got {value[:40]!r}", "bad_request")
    return int(value)


async def _read_capped(request: Request, limit: int, too_large: str) -> bytes:
    """The request body within ``BODY_TIMEOUT_S`` (else 408), or 413 as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, too_large, "too_large")

    async def read() -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, too_large, "too_large")
            chunks.append(chunk)
        return b"".join(chunks)

    try:
        return await asyncio.wait_for(read(), BODY_TIMEOUT_S)
    except asyncio.TimeoutError:
        raise ApiError(408, f"request body not received within {BODY_TIMEOUT_S:g} s", "timeout") from None
    except ClientDisconnect:
        raise ApiError(400, "client disconnected during the upload", "bad_request") from None


def _check_finite(scores: Any) -> None:
    """500 when the model's scores are not numbers (a broken model), rather than a wrong or unencodable answer."""
    if not np.isfinite(scores).all():
        raise ApiError(500, NAN_SCORES, "model_nan")


async def _image_from_multipart(request: Request, body: bytes) -> bytes:
    """The bytes of the ``image`` file field (or the only file field) of a multipart body."""
    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=8, max_part_size=MULTIPART_OVERHEAD)
    try:
        field = form.get("image")
        if not isinstance(field, UploadFile):
            field = next((v for _, v in form.multi_items() if isinstance(v, UploadFile)), None)
        if field is None:
            raise ApiError(400, "multipart body has no file field (send the picture as 'image')", "bad_request")
        return await field.read()
    finally:
        await form.close()


class EdgeServer:
    """The routes, bound to one model: a camera ``LiveFeed`` (optional) and a Runtime for uploads."""

    def __init__(self, runtime: Runtime, feed: LiveFeed | None, options: ServeOptions, metrics: Metrics) -> None:
        self.runtime, self.feed, self.options, self.metrics = runtime, feed, options, metrics
        self.store = SampleStore(options.samples, runtime.labels) if options.samples else None
        self.uploads = RecentImages(max_items=32)
        self.live_pins = RecentImages(max_items=16)
        self._pinned: tuple[int, str] | None = None
        self._infer_lock = threading.Lock()
        self._upload_slots = asyncio.Semaphore(options.max_concurrent_uploads)
        self.decoder = DecodePool(options.max_pixels, options.decode_workers, options.decode_seconds)
        self.limiter = RateLimiter(options.rate, options.burst) if options.rate > 0 else None
        self.page = (resources.files("edgeclf.serve") / "static" / "index.html").read_text(encoding="utf-8")

    def routes(self) -> list[Route]:
        return [Route("/", self.index), Route("/healthz", self.healthz), Route("/info", self.info),
                Route("/metrics", self.prometheus), Route("/live", self.live), Route("/stream.mjpg", self.stream),
                Route("/predict", self.predict, methods=["POST"]), Route("/feedback", self.feedback, methods=["POST"])]

    # -- read-only --------------------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page, headers=PAGE_HEADERS)

    async def healthz(self, request: Request) -> Response:
        if self.feed is None:
            return JSONResponse({"status": "ok", "camera": "none"})
        problem = self.feed.problem()
        if problem is None:
            return JSONResponse({"status": "ok", "camera": self.feed.status})
        return JSONResponse({"status": "degraded", "camera": self.feed.status, "error": problem}, 503)

    async def info(self, request: Request) -> Response:
        o = self.options
        server = {"camera": self.feed.describe() if self.feed else None, "samples": self.store is not None,
                  "max_upload_bytes": o.max_upload_bytes, "max_pixels": o.max_pixels, "top_k": o.top_k,
                  "token_required": o.token is not None}
        return JSONResponse({**self.runtime.describe(), "server": server})

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=METRICS_CONTENT_TYPE)

    async def live(self, request: Request) -> Response:
        if self.feed is None:
            return JSONResponse({"camera": "none"})
        result = self.feed.latest()
        out: dict[str, Any] = {"camera": self.feed.status, "frames_total": self.feed.frames}
        if result is not None:
            _check_finite([result.score, *(p.score for p in result.top_k)])
            out.update(result.to_dict(), id=self._pin(result.frame, result.label, result.image))
        return JSONResponse(out)

    def _pin(self, frame: int, label: str, image: Any) -> str | None:
        """Keep the frame a client is shown, so its feedback can save it (one id per frame)."""
        if self.store is None:
            return None
        if self._pinned is None or self._pinned[0] != frame:
            self._pinned = (frame, self.live_pins.add(Judged(predicted=label, frame=image), "live"))
        return self._pinned[1]

    async def stream(self, request: Request) -> Response:
        if self.feed is None:
            raise ApiError(404, "no camera: this server was started without --source", "not_found")
        feed = self.feed

        async def parts() -> AsyncIterator[bytes]:
            async for jpeg in feed.jpegs():
                yield b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)

        return StreamingResponse(parts(), media_type="multipart/x-mixed-replace; boundary=frame")

    # -- uploads ----------------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        top_k = _query_int(request, "top_k", self.options.top_k)
        if self.limiter is not None:
            wait = self.limiter.take(request.client.host if request.client else "?")
            if wait:
                raise ApiError(429, f"too many uploads from this client (limit {self.options.rate:g}/s, "
                               f"burst {self.options.burst}); retry in {wait:.1f} s", "rate_limited",
                               {"Retry-After": retry_after(wait)})
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "multipart/form-data" and ctype not in RAW_IMAGE_TYPES:
            raise ApiError(415, f"unsupported content type {ctype or '(none)'!r}: send an image body "
                           f"({', '.join(RAW_IMAGE_TYPES)}) or multipart/form-data with an 'image' file", "unsupported")
        limit = self.options.max_upload_bytes
        too_large = f"upload exceeds the limit of {limit / 2**20:g} MB"
        try:
            await asyncio.wait_for(self._upload_slots.acquire(), SLOT_WAIT_S)
        except asyncio.TimeoutError:
            raise ApiError(503, f"server busy: {self.options.max_concurrent_uploads} uploads in progress; "
                           "retry shortly",
                           "busy", {"Retry-After": "1"}) from None
        try:
            multi = ctype == "multipart/form-data"
            body = await _read_capped(request, limit + (MULTIPART_OVERHEAD if multi else 0), too_large)
            data = await _image_from_multipart(request, body) if multi else body
            if len(data) > limit:
                raise ApiError(413, too_large, "too_large")
            if not data:
                raise ApiError(400, "empty upload", "bad_request")
            return JSONResponse(await run_in_threadpool(self._classify, data, top_k))
        finally:
            self._upload_slots.release()

    def _classify(self, data: bytes, top_k: int) -> dict[str, Any]:
        try:
            image, header = self.decoder.decode(data)
        except ImageError as exc:
            status, kind = next((s, k) for cls, s, k in IMAGE_REFUSALS if isinstance(exc, cls))
            raise ApiError(status, str(exc), kind) from None
        with self._infer_lock:
            t0 = time.perf_counter()
            probs = self.runtime.probabilities(image)
            seconds = time.perf_counter() - t0
        _check_finite(probs)
        preds = self.runtime.top(probs, top_k)
        self.metrics.inc("edgeclf_predictions_total")
        self.metrics.observe("edgeclf_inference_seconds", seconds, source="upload")
        key = (self.uploads.add(Judged(predicted=preds[0].label, data=data, ext=EXTENSIONS[header.format]), "up")
               if self.store is not None else None)
        return {"id": key, "infer_ms": round(seconds * 1e3, 3),
                "image": {"format": header.format, "width": header.width, "height": header.height},
                "predictions": [p.to_dict() for p in preds]}

    async def feedback(self, request: Request) -> Response:
        if self.store is None:
            raise ApiError(404, "sample collection is off: start edgeclf serve with --samples DIR", "not_found")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, 'send JSON: {"id": "<result id>", "label": "<true label>"}', "unsupported")
        try:
            body = json.loads(await _read_capped(request, FEEDBACK_MAX_BYTES, "feedback body too large"))
            key, label = str(body["id"]), str(body["label"])
        except (ValueError, KeyError, TypeError):
            raise ApiError(400, 'expected JSON {"id": "<result id>", "label": "<true label>"}', "bad_request") from None
        item = (self.live_pins if key.startswith("live-") else self.uploads).get(key)
        if item is None:
            raise ApiError(404, f"unknown or expired result id {key!r}", "not_found")
        try:
            path = await run_in_threadpool(self.store.save, key, item, label)
        except DataError as exc:
            raise ApiError(400, str(exc), "bad_request") from None
        self.metrics.inc("edgeclf_samples_saved_total")
        return JSONResponse({"saved": str(path.relative_to(self.store.folder)), "label": label,
                             "predicted": item.predicted}, 201)


def create_app(runtime: Runtime, feed: LiveFeed | None, options: ServeOptions,
               metrics: Metrics | None = None) -> ASGIApp:
    """The ASGI application: routes, JSON errors, the token/Host guard, and the camera thread's lifetime."""
    metrics = metrics or serve_metrics()
    server = EdgeServer(runtime, feed, options, metrics)

    async def api_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ApiError)
        metrics.inc("edgeclf_errors_total", kind=exc.kind)
        return JSONResponse({"error": exc.message}, exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        metrics.inc("edgeclf_errors_total", kind=f"http_{exc.status_code}")
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    async def internal_error(request: Request, exc: Exception) -> Response:
        metrics.inc("edgeclf_errors_total", kind="internal")
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, 500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        server.decoder.start()
        if feed is not None:
            feed.start()
        try:
            yield
        finally:
            if feed is not None:
                feed.stop()
            server.decoder.close()

    app = Starlette(routes=server.routes(), lifespan=lifespan,
                    exception_handlers={ApiError: api_error, HTTPException: http_error, Exception: internal_error})
    return Guard(app, options.token, HostPolicy(is_loopback(options.host), options.allowed_hosts), metrics)

