"""The engine for a model file: one adapter per container of the formats table, chosen by ``format_of``."""
from __future__ import annotations

from typing import Callable

from edgeclf.errors import EdgeclfError
from edgeclf.runtime.devices import check_device
from edgeclf.runtime.engine import Engine
from edgeclf.runtime.onnx_backend import OnnxBackend
from edgeclf.runtime.tflite_backend import TFLiteBackend

BACKENDS: dict[str, Callable[[bytes, str, str, int | None], Engine]] = {"tflite": TFLiteBackend, "onnx": OnnxBackend}


def open_backend(container: str, data: bytes, source: str, device: str = "cpu",
                 num_threads: int | None = None) -> Engine:
    """Load the model ``data`` (a file of ``container`` kind, named ``source``) on ``device``."""
    check_device(device)
    if num_threads is not None and num_threads < 1:
        raise EdgeclfError(f"num_threads must be >= 1, got {num_threads}")
    return BACKENDS[container](data, source, device, num_threads)
