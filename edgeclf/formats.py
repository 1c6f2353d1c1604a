"""The one table of model formats edgeclf writes and runs, iterated by both ``convert`` and ``bench``.

Adding a format is one row here plus its converter in ``edgeclf.convert``. This module imports nothing
heavy, so the on-device benchmark can read it without TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import ConversionError

QUANT_MODES = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")


@dataclass(frozen=True)
class Format:
    """One output format: how it is named, which quantisations it has and what it runs on."""

    name: str                      # the --to value
    title: str                     # human name for tables
    suffix: str                    # file name ending, appended to "<stem>_<quant>"
    quants: tuple[str, ...]        # quantisation modes, the first is the default
    devices: tuple[str, ...]       # Runtime devices that run it
    pip: tuple[str, ...]           # packages the conversion needs (beyond the [train] extra's TensorFlow)
    apt: tuple[str, ...] = ()      # system packages / tools it needs on the converting or target machine

    @property
    def default_quant(self) -> str:
        """The quantisation used when none is asked for."""
        return self.quants[0]

    def filename(self, stem: str, quant: str) -> str:
        """Output file name for ``stem`` converted with ``quant`` (e.g. ``model_int8_edgetpu.tflite``)."""
        return f"{stem}_{quant}{self.suffix}"


FORMATS: tuple[Format, ...] = (
    Format("tflite", "TFLite", ".tflite", ("fp32", "fp16", "dynamic", "int8"), ("cpu", "gpu"),
           ("tensorflow", "ai-edge-litert")),
    Format("onnx", "ONNX", ".onnx", ("fp32", "int8"), ("cpu", "jetson"),
           ("tf2onnx", "onnx", "onnxruntime")),
    Format("edgetpu", "Edge TPU", "_edgetpu.tflite", ("int8",), ("coral",),
           ("tensorflow", "ai-edge-litert"), ("edgetpu-compiler", "libedgetpu1-std")),
    # the portable TensorRT artifact is a static-shape ONNX (+ an int8 calibration cache); the engine itself
    # is built on the Jetson (converters/onnx_to_tensorrt.sh or ONNX Runtime's TensorRT provider)
    Format("tensorrt", "TensorRT", "_tensorrt.onnx", ("fp16", "fp32", "int8"), ("jetson",),
           ("tf2onnx", "onnx", "onnxruntime"), ("tensorrt (trtexec)",)),
)

FORMAT_NAMES = tuple(f.name for f in FORMATS)


def get_format(name: str) -> Format:
    """The row for ``name``; an unknown name is a one-line error listing the valid ones."""
    for fmt in FORMATS:
        if fmt.name == name.lower():
            return fmt
    raise ConversionError(f"unknown format {name!r}; choose from {', '.join(FORMAT_NAMES)} or all")


def format_of(path: str | Path) -> Format:
    """The format a model file belongs to, judged by its name (``*_edgetpu.tflite`` before ``*.tflite``)."""
    name = Path(path).name.lower()
    for fmt in sorted(FORMATS, key=lambda f: -len(f.suffix)):
        if name.endswith(fmt.suffix):
            return fmt
    raise ConversionError(f"{path}: not a model file edgeclf knows ({', '.join(f.suffix for f in FORMATS)})")
