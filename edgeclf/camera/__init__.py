"""The camera layer: classify the newest frame of a camera, stream, video or folder, for months on end.

``sources`` opens frames, ``loop`` drains and classifies them, ``sinks`` writes results, ``signals`` stops cleanly.

    for result in edgeclf.camera.stream(runtime, source=0):
        print(result.label, result.score, result.latency_ms)
"""
from edgeclf.camera.loop import Result, Stats, Stream, run, stop_on_signals, stream
from edgeclf.camera.sources import FrameSource, SourceError, open_source

__all__ = ["Result", "Stats", "Stream", "stream", "run", "stop_on_signals", "SourceError", "FrameSource",
           "open_source"]
