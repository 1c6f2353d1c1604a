"""``serve``: one model behind a web page and JSON API on this device, with an optional live camera."""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any, Callable

from edgeclf.errors import EdgeclfError
from edgeclf.runtime import Runtime
from edgeclf.serve.app import ServeOptions, check_exposure, create_app
from edgeclf.serve.live import LiveFeed
from edgeclf.serve.metrics import serve_metrics
from edgeclf.serve.transport import HEADER_TIMEOUT_S, bind, connection_budget, run

log = logging.getLogger("edgeclf")


def serve(model: str | os.PathLike, source: str | None = None, host: str = "127.0.0.1", port: int = 8080,
          token: str | None = None, samples: str | os.PathLike | None = None, max_upload_mb: float = 10.0,
          max_megapixels: float = 40.0, top_k: int = 5, fps: float | None = None, width: int | None = None,
          height: int | None = None, insecure: bool = False, allowed_hosts: tuple[str, ...] = (),
          rate: float = 10.0, burst: int = 60, decode_seconds: float = 5.0, header_timeout: float = HEADER_TIMEOUT_S,
          announce: Callable[[str], Any] = log.info, **runtime_kwargs: Any) -> None:
    """Serve ``model`` on ``host:port`` until SIGINT/SIGTERM; ``source`` adds the live camera page.

    A network address needs ``token`` (or ``insecure=True``). ``runtime_kwargs`` go to ``Runtime`` (device,
    num_threads, labels, mean, std, ...). Uploads and the camera loop each get their own interpreter, so an
    upload never waits for a camera frame; uploads are decoded in two bounded worker processes. ``announce``
    receives the one line with the server's address once it listens (the CLI prints it).
    """
    warning = check_exposure(host, token, insecure)
    if warning:
        log.warning(warning)
    try:
        sock = bind(host, port)
    except OSError as exc:
        raise EdgeclfError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    runtime = Runtime(model, **runtime_kwargs)
    metrics = serve_metrics()
    feed = None
    if source is not None:
        feed = LiveFeed(Runtime(model, **runtime_kwargs), source, metrics, top_k=top_k, fps=fps, width=width,
                        height=height)
    options = ServeOptions(host=host, token=token, samples=Path(samples) if samples else None,
                           max_upload_bytes=int(max_upload_mb * 2**20), max_pixels=int(max_megapixels * 1e6),
                           top_k=top_k, allowed_hosts=tuple(allowed_hosts), rate=rate, burst=burst,
                           decode_seconds=decode_seconds, header_timeout=header_timeout)
    options = dataclasses.replace(options, max_connections=connection_budget(options.max_connections))
    name, bound_port = sock.getsockname()[:2]
    shown = f"[{name}]" if ":" in name else name
    announce(f"edgeclf serve: http://{shown}:{bound_port}/  model {model}, "
             f"{'source ' + feed.source.name if feed else 'uploads only'}"
             f"{', token required' if token else ''}{f', samples -> {samples}' if samples else ''}")
    run(create_app(runtime, feed, options, metrics), sock, options.max_connections, options.header_timeout)
