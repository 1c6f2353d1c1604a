"""edgeclf: train, convert, benchmark and run image classifiers on edge devices.

``import edgeclf`` is light: the on-device part (``Runtime``) needs only numpy, OpenCV and a TFLite or
ONNX runtime; ``train`` and ``convert`` import TensorFlow only when called (the ``[train]`` extra).
"""
from __future__ import annotations

import os as _os
from typing import Any

from edgeclf._version import __version__

# For the [train] half, set before any TensorFlow import through edgeclf: Keras 2 (tfmot and tf2onnx need
# it; users are never asked to set it) and TensorFlow's C++ start-up chatter off (errors still raise).
_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeclf.errors import (DeviceUnavailableError, EdgeclfError, ImageError, InvalidModelError,  # noqa: E402
                            ModelNotFoundError)

_LAZY = {
    "Runtime": ("edgeclf.runtime", "Runtime"),
    "Prediction": ("edgeclf.runtime", "Prediction"),
    "Metadata": ("edgeclf.artifact", "Metadata"),
    "Preprocess": ("edgeclf.artifact", "Preprocess"),
    "train": ("edgeclf.training", "train"),
    "convert": ("edgeclf.conversion", "convert"),
    "bench": ("edgeclf.benchmark", "bench"),
    "evaluate": ("edgeclf.evaluation", "evaluate"),
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
