"""Errors of the model registry: an architecture or option it does not offer, and weights it cannot load."""
from __future__ import annotations

from edgeclf.errors import EdgeclfError


class ModelConfigError(EdgeclfError, ValueError):
    """An unknown architecture name, or an input size / option the architecture does not support."""


class WeightsError(EdgeclfError, RuntimeError):
    """Pretrained weights are unavailable (offline, package missing) or a weights file cannot be loaded."""
