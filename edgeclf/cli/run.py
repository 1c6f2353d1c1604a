"""``edgeclf run MODEL --source S``: classify a camera, video, stream or image folder in real time."""
from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Any

import click

from edgeclf.cli.options import device_options, json_option, model_argument, runtime_kwargs, runtime_options, \
    top_k_option

DEFAULT_VIDEO_FPS = 30.0  # container rate for --save when neither the source nor --fps gives one


@click.command("run")
@model_argument()
@click.option("--source", "-s", default="0", show_default=True,
              help="Camera index, /dev/videoN, video file, rtsp:// or http:// URL, image folder, or 'picamera2'.")
@click.option("--headless", is_flag=True, help="No window; JSON lines go to --json (stdout by default).")
@json_option("one object per processed frame, one per line,")
@click.option("--save", type=click.Path(dir_okay=False), help="Write the annotated video here (.mp4, .avi, ...).")
@top_k_option()
@click.option("--realtime", is_flag=True, help="Pace a file/folder at its frame rate and drop stale frames, like a camera.")
@click.option("--smooth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Average the scores over the last K frames.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Below this score the label is 'unknown'.")
@click.option("--reconnect", type=click.IntRange(min=0), default=5, show_default=True,
              help="Re-open a lost camera/stream this many times (with backoff) before giving up.")
@click.option("--width", type=click.IntRange(min=1), help="Frame width to request from a camera.")
@click.option("--height", type=click.IntRange(min=1), help="Frame height to request from a camera.")
@click.option("--fps", type=click.FloatRange(min=0, min_open=True),
              help="Frame rate to request from a camera (the rate of an image folder with --realtime).")
@click.option("--max-frames", type=click.IntRange(min=1), help="Stop after this many results.")
@runtime_options
@device_options()
def cmd(model: str, source: str, headless: bool, json_path: str | None, save: str | None, top_k: int,
        realtime: bool, smooth: int, threshold: float, reconnect: int, width: int | None, height: int | None,
        fps: float | None, max_frames: int | None, **kwargs: Any) -> None:
    """Classify frames from --source with MODEL; show them, or write JSON lines and/or an annotated video."""
    import cv2

    from edgeclf.camera import stop_on_signals, stream
    from edgeclf.runtime import Runtime
    from edgeclf.camera.sinks import JsonLinesSink, VideoSink, Window, annotate, window_available

    _quiet_opencv(cv2)  # failures reach the user as one line
    runtime = Runtime(model, **runtime_kwargs(kwargs))
    if not headless and not window_available():
        click.echo("edgeclf: no display (or OpenCV built without GUI): running headless", err=True)
        headless = True
    json_target = json_path or ("-" if headless else None)
    stop = threading.Event()
    frames = stream(runtime, source, width=width, height=height, fps=fps, realtime=realtime, top_k=top_k,
                    smooth=smooth, threshold=threshold, reconnect=reconnect, max_frames=max_frames, stop=stop)
    frames.open()  # a source that cannot be opened fails here, before any output file exists
    with stop_on_signals(stop), contextlib.ExitStack() as outputs:
        outputs.callback(lambda: click.echo(_summary(frames.stats.to_dict()), err=True))
        outputs.callback(frames.close)
        jsonl = JsonLinesSink(json_target) if json_target else None
        if jsonl is not None:
            outputs.callback(jsonl.close)
        window = None if headless else Window(f"edgeclf: {source}")
        if window is not None:
            outputs.callback(window.close)
        video = None
        for result in frames:
            if jsonl is not None:
                try:
                    jsonl.write(result.to_dict())
                except BrokenPipeError:  # `edgeclf run ... | head`: the reader is gone, stop quietly
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    break
            if save is None and window is None:
                continue
            annotate(result.image, result)
            if save is not None:
                if video is None:
                    video = VideoSink(save, fps=frames.source.fps or fps or DEFAULT_VIDEO_FPS)
                    outputs.callback(video.close)
                video.write(result.image)
            if window is not None and not window.show(result.image):
                break


def _quiet_opencv(cv2: Any) -> None:
    """OpenCV's own log at ERROR level. Builds without the ``cv2.utils.logging`` wrapper (Debian's and Raspberry
    Pi OS's python3-opencv 4.6) have the older ``cv2.setLogLevel``, same levels (2 = ERROR)."""
    logging = getattr(cv2.utils, "logging", None)
    if logging is not None:
        logging.setLogLevel(logging.LOG_LEVEL_ERROR)
    elif hasattr(cv2, "setLogLevel"):
        cv2.setLogLevel(2)


def _summary(stats: dict[str, Any]) -> str:
    return (f"edgeclf: {stats['processed']} frames in {stats['seconds']:.1f} s ({stats['fps']:.1f} fps); "
            f"dropped {stats['dropped']} stale, skipped {stats['skipped']} undecodable, "
            f"{stats['reconnects']} reconnect(s)")
