"""``edgeclf serve MODEL [--source S]``: a web page and JSON API for MODEL on this device."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from edgeclf.cli.options import device_options, model_argument, runtime_kwargs, runtime_options, top_k_option


@click.command("serve")
@model_argument()
@click.option("--source", "-s", default=None,
              help="Camera index, /dev/videoN, video file, stream URL, image folder or 'picamera2' to show live "
                   "(files and folders loop). Without it: uploads only.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for the whole network (needs --token, or --insecure).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="0 = any free port.")
@click.option("--token", envvar="EDGECLF_TOKEN", default=None,
              help="Require this token on every endpoint but /healthz (header 'Authorization: Bearer T' or "
                   "?token=T). Also read from $EDGECLF_TOKEN.")
@click.option("--insecure", is_flag=True,
              help="Allow listening beyond this machine without --token (anyone on the network can use it).")
@click.option("--allowed-host", "allowed_hosts", multiple=True, metavar="NAME",
              help="A Host name to answer besides localhost, IP addresses and this machine's name (e.g. behind "
                   "a reverse proxy). Repeatable.")
@click.option("--samples", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Save images given thumbs-up/down here, one folder per label (off without it).")
@click.option("--max-upload-mb", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True)
@click.option("--max-megapixels", type=click.FloatRange(min=0, min_open=True), default=40.0, show_default=True,
              help="Reject uploads that declare more pixels than this (decompression bombs).")
@click.option("--rate-limit", "rate", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Uploads per second per client (0: no limit); more get 429.")
@click.option("--rate-burst", "burst", type=click.IntRange(min=1), default=60, show_default=True,
              help="Uploads per client allowed at once before the rate applies.")
@click.option("--decode-seconds", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True,
              help="CPU time one upload may take to decode (longer: 422).")
@click.option("--header-timeout", type=click.FloatRange(min=0, min_open=True), default=10.0, show_default=True,
              help="Seconds a client has to send a request's headers (slow clients are cut off).")
@top_k_option()
@click.option("--fps", type=click.FloatRange(min=0, min_open=True),
              help="Frame rate to request from a camera; the pace of an image folder (default 5).")
@click.option("--width", type=click.IntRange(min=1), help="Frame width to request from a camera.")
@click.option("--height", type=click.IntRange(min=1), help="Frame height to request from a camera.")
@runtime_options
@device_options()
def cmd(model: str, source: str | None, host: str, port: int, token: str | None, insecure: bool,
        allowed_hosts: tuple[str, ...], samples: Path | None, max_upload_mb: float, max_megapixels: float,
        rate: float, burst: int, decode_seconds: float, header_timeout: float, top_k: int, fps: float | None,
        width: int | None, height: int | None, **kwargs: Any) -> None:
    """Serve a live page (camera stream, top-k, FPS, uploads, feedback) and a JSON API for MODEL."""
    from edgeclf.serve import serve  # a missing [serve] package: one line from the group, naming the extra
    serve(model, source=source, host=host, port=port, token=token, samples=samples, max_upload_mb=max_upload_mb,
          max_megapixels=max_megapixels, top_k=top_k, fps=fps, width=width, height=height, insecure=insecure,
          allowed_hosts=allowed_hosts, rate=rate, burst=burst, decode_seconds=decode_seconds,
          header_timeout=header_timeout, announce=click.echo, **runtime_kwargs(kwargs))
