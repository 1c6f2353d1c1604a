"""The ``edgeclf`` command: a click group whose subcommands are imported only when invoked.

Each subcommand lives in its own module here (``edgeclf/cli/<name>.py`` defining ``cmd``), so
``edgeclf predict`` never pays for TensorFlow and a broken optional extra breaks only its command.
"""
from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from edgeclf._version import __version__
from edgeclf.errors import EdgeclfError

COMMANDS = {
    "info": "Show a model file's metadata, inputs, outputs and backend.",
    "predict": "Classify image files with a .tflite or .onnx model.",
    "train": "Fine-tune MobileNetV2 / EfficientNet-Lite on a class-per-folder dataset.",
    "eval": "Evaluate a model on a class-per-folder dataset.",
    "explain": "Grad-CAM heat map of a Keras model's decision on an image.",
    "convert": "Convert a trained model to TFLite / ONNX / Edge TPU / TensorRT with parity checks.",
    "bench": "Benchmark model files: latency, throughput, memory, size, accuracy.",
    "run": "Classify a camera, video, stream or image folder in real time.",
    "serve": "Serve a web page and JSON API for a model on this device.",
    "demo": "The whole pipeline on built-in data, with a report.",
}

# What to install when a command's import fails: OpenCV is not a pip requirement (Raspberry Pi OS and Jetson
# provide it from apt as python3-opencv, which pip cannot see), so its absence gets its own line.
INSTALL_HINTS = {
    "cv2": "pip install 'edgeclf[opencv]' (on Raspberry Pi OS or Jetson: sudo apt install python3-opencv)",
    "onnxruntime": "pip install 'edgeclf[onnx]'",
    "openvino": "pip install 'edgeclf[openvino]'",
    **dict.fromkeys(("starlette", "uvicorn", "multipart", "python_multipart"), "pip install 'edgeclf[serve]'"),
}
DEFAULT_HINT = "pip install 'edgeclf[train]' for training and conversion"


def _missing(exc: ModuleNotFoundError) -> str:
    root = (exc.name or "").split(".")[0]
    return f"needs {root or exc.name}, which is not installed: {INSTALL_HINTS.get(root, DEFAULT_HINT)}"


class LazyGroup(click.Group):
    """A group that imports ``edgeclf.cli.<name>`` only when that command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if importlib.util.find_spec(f"edgeclf.cli.{name.replace('-', '_')}")]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        try:
            module = importlib.import_module(f"edgeclf.cli.{name.replace('-', '_')}")
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("edgeclf.cli."):
                return None
            raise click.ClickException(f"'edgeclf {name}' {_missing(exc)}") from None
        return module.cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except EdgeclfError as exc:
            click.echo(f"edgeclf: error: {exc}", err=True)
            sys.exit(2 if isinstance(exc, click.UsageError) else 1)
        except ModuleNotFoundError as exc:  # a command's lazy import (Runtime -> cv2) of an optional package
            if (exc.name or "").split(".")[0] not in INSTALL_HINTS:
                raise
            click.echo(f"edgeclf: error: {ctx.invoked_subcommand or 'edgeclf'} {_missing(exc)}", err=True)
            sys.exit(1)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeclf")
@click.option("-v", "--verbose", is_flag=True, help="Also print debugging messages.")
@click.option("-q", "--quiet", is_flag=True, help="Print only warnings and errors.")
def main(verbose: bool, quiet: bool) -> None:
    """edgeclf: image classifiers from training to the device."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("edgeclf")
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)
    log.propagate = False
