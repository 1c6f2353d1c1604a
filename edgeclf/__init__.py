"""edgeclf: train, convert, benchmark and run image classifiers on edge devices.

``import edgeclf`` is light: the on-device part (``Runtime``) needs only numpy, OpenCV and a TFLite or
ONNX runtime; ``train`` and ``convert`` import TensorFlow only when called (the ``[train]`` extra).
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import (DeviceUnavailableError, EdgeclfError, ImageError, InvalidModelError,  # noqa: E402
                     ModelNotFoundError)

_LAZY = {
    "Runtime": ("edgeclf.runtime", "Runtime"),
    "Prediction": ("edgeclf.runtime", "Prediction"),
    "Metadata": ("edgeclf.artifact", "Metadata"),
    "Preprocess": ("edgeclf.artifact", "Preprocess"),
    "train": ("edgeclf.training", "train"),
    "convert": ("edgeclf.convert", "convert"),
    "bench": ("edgeclf.bench", "bench"),
}

__all__ = ["__version__", "EdgeclfError", "ModelNotFoundError", "InvalidModelError", "ImageError",
           "DeviceUnavailableError", *_LAZY]


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``import edgeclf`` stays cheap and TensorFlow-free."""
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgeclf' has no attribute {name!r}")
