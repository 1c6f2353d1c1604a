"""The one table of model formats: what each file is called, which container it is, what runs it.

``convert`` and ``bench`` iterate it, and every "which kind of file is this" question (reading metadata,
opening a backend, telling a model file from a Keras source) is answered here by ``format_of``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from edgeclf.errors import ConversionError, InvalidModelError

QUANT_MODES = ("fp32", "fp16", "dynamic", "int8")
IO_TYPES = ("uint8", "int8", "float32")
CONTAINERS = ("tflite", "onnx")              # what an interpreter opens: a TFLite flatbuffer or an ONNX protobuf
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")  # sources that conversion starts from (or a SavedModel folder)


@dataclass(frozen=True)
class Format:
    """One output format: its names, container, quantisations and the devices that run it."""

    name: str                      # the --to value
    title: str                     # human name for tables
    suffix: str                    # file name ending, appended to "<stem>_<quant>"
    container: str                 # tflite | onnx: which reader and engine open the file
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
    Format("tflite", "TFLite", ".tflite", "tflite", ("fp32", "fp16", "dynamic", "int8"), ("cpu", "gpu"),
           ("tensorflow", "ai-edge-litert")),
    Format("onnx", "ONNX", ".onnx", "onnx", ("fp32", "fp16", "int8"), ("cpu", "gpu", "jetson"),
           ("tf2onnx", "onnx", "onnxruntime")),
    Format("edgetpu", "Edge TPU", "_edgetpu.tflite", "tflite", ("int8",), ("coral",),
           ("tensorflow", "ai-edge-litert"), ("edgetpu-compiler", "libedgetpu1-std")),
    # the portable TensorRT artifact is a static-shape ONNX (int8: the QDQ ONNX); the engine itself is built on
    # the Jetson (converters/onnx_to_tensorrt.sh or ONNX Runtime's TensorRT provider)
    Format("tensorrt", "TensorRT", "_tensorrt.onnx", "onnx", ("fp16", "fp32", "int8"), ("jetson",),
           ("tf2onnx", "onnx", "onnxruntime"), ("tensorrt (trtexec)",)),
)

FORMAT_NAMES = tuple(f.name for f in FORMATS)


def get_format(name: str) -> Format:
    """The row for ``name``; an unknown name is a one-line error listing the valid ones."""
    for fmt in FORMATS:
        if fmt.name == name.lower():
            return fmt
    raise ConversionError(f"unknown format {name!r}; choose from {', '.join(FORMAT_NAMES)} or all")


def format_of(path: str | os.PathLike) -> Format:
    """The format of a model file, judged by its name (``*_edgetpu.tflite`` before ``*.tflite``)."""
    name = Path(path).name.lower()
    for fmt in sorted(FORMATS, key=lambda f: -len(f.suffix)):
        if name.endswith(fmt.suffix):
            return fmt
    raise InvalidModelError(f"{path}: unsupported model format {Path(path).suffix or '(no suffix)'}; "
                            f"expected a .tflite or .onnx file")


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` names a file an interpreter runs (.tflite / .onnx), as opposed to a Keras source."""
    return Path(path).suffix.lower() in {f".{c}" for c in CONTAINERS}


def is_keras_source(path: str | os.PathLike) -> bool:
    """Whether ``path`` is what conversion starts from: a run or SavedModel folder, or a Keras file."""
    p = Path(path)
    return p.is_dir() or p.suffix.lower() in KERAS_SUFFIXES
