"""The exceptions edgeclf raises: one base class, one subclass per kind of thing that went wrong.

Every message names the file (or device) and what is wrong, in one line, so the CLI can print it as
``edgeclf: error: <message>`` and exit non-zero.
"""
from __future__ import annotations


class EdgeclfError(Exception):
    """Base class of every error edgeclf raises on purpose."""


class ModelNotFoundError(EdgeclfError, FileNotFoundError):
    """The model path does not exist."""


class InvalidModelError(EdgeclfError, ValueError):
    """The model file exists but is empty, truncated, corrupt, of the wrong format or of the wrong shape."""


class ImageError(EdgeclfError, ValueError):
    """An image (path or array) could not be read or has an unusable shape or dtype."""


class DeviceUnavailableError(EdgeclfError, RuntimeError):
    """The requested device (gpu, coral, jetson) is not usable here; the message says what to install."""


class DataError(EdgeclfError, ValueError):
    """A dataset folder or file is missing, empty or unreadable."""


class ConversionError(EdgeclfError, RuntimeError):
    """A conversion failed or its output did not pass the parity check."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), cut to ``limit``."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]
