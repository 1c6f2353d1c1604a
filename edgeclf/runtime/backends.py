"""The engine for a model file: one adapter per (container, backend), the container chosen by ``format_of``."""
from __future__ import annotations

from typing import Callable

from edgeclf.errors import EdgeclfError
from edgeclf.runtime.devices import check_device
from edgeclf.runtime.engine import Engine
from edgeclf.runtime.onnx_backend import OnnxBackend
from edgeclf.runtime.openvino_backend import OpenVinoBackend
from edgeclf.runtime.tflite_backend import TFLiteBackend

BACKENDS: dict[tuple[str, str], Callable[[bytes, str, str, int | None], Engine]] = {
    ("tflite", "litert"): TFLiteBackend,
    ("onnx", "onnxruntime"): OnnxBackend,
    ("onnx", "openvino"): OpenVinoBackend,
}


def backends_for(container: str) -> list[str]:
    """The backends that open a ``container`` file, the default (what ``backend="auto"`` means) first."""
    return [b for c, b in BACKENDS if c == container]


def resolve_backend(container: str, backend: str = "auto") -> str:
    """``backend`` checked against ``container`` ("auto" = its default); a one-line error lists the choices."""
    choices = backends_for(container)
    name = backend.lower()
    if name == "auto":
        return choices[0]
    if name not in choices:
        raise EdgeclfError(f"backend {backend!r} does not run .{container} files; choose from auto, {', '.join(choices)}")
    return name


def open_backend(container: str, data: bytes, source: str, device: str = "cpu",
                 num_threads: int | None = None, backend: str = "auto") -> Engine:
    """Load the model ``data`` (a file of ``container`` kind, named ``source``) on ``device`` with ``backend``."""
    check_device(device)
    if num_threads is not None and num_threads < 1:
        raise EdgeclfError(f"num_threads must be >= 1, got {num_threads}")
    return BACKENDS[(container, resolve_backend(container, backend))](data, source, device, num_threads)
