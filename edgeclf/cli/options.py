"""Options every command shares, declared once so the grammar is the same everywhere."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from edgeclf.artifact import COLOR_ORDERS, OUTPUT_KINDS, RESIZE_POLICIES
from edgeclf.errors import ModelNotFoundError
from edgeclf.fileio import atomic_write_text
from edgeclf.runtime.devices import DEVICES

TOP_K = 5  # predict, run and serve show this many classes unless --top-k says otherwise


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        out = tuple(float(v) for v in value.replace(",", " ").split())
    except ValueError:
        raise click.BadParameter(f"expected a number or three comma-separated numbers, got {value!r}") from None
    if len(out) not in (1, 3):
        raise click.BadParameter(f"expected 1 or 3 values, got {len(out)}")
    return out


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    """``224`` or ``224x160`` (height x width)."""
    if value is None:
        return None
    try:
        parts = [int(v) for v in value.lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise click.BadParameter(f"expected N or HxW in pixels, got {value!r}")
    return (parts[0], parts[-1])


def _existing(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """The one check, wording and exit code (1) for a model path that does not exist, in every command."""
    for path in (value if isinstance(value, tuple) else (value,)):
        if path is not None and not Path(path).exists():
            raise ModelNotFoundError(f"{path}: no such file or folder")
    return value


def _devices(many: bool) -> Callable[[click.Context, click.Parameter, str], str | list[str]]:
    """A ``--device`` callback: one checked name, or with ``many`` a de-duplicated comma-separated list."""
    def callback(ctx: click.Context, param: click.Parameter, value: str) -> str | list[str]:
        names = list(dict.fromkeys(n.strip().lower() for n in value.split(",") if n.strip()))
        for name in names:
            if name not in DEVICES:
                raise click.BadParameter(f"{name!r} is not one of {', '.join(DEVICES)}")
        if not names:
            raise click.BadParameter("give a device")
        if not many and len(names) > 1:
            raise click.BadParameter("this command runs on one device")
        return names if many else names[0]
    return callback


MODEL_OPTIONS = [
    click.option("--labels", type=click.Path(dir_okay=False), help="Labels file (one per line), for models made elsewhere."),
    click.option("--mean", callback=_floats, help="Mean subtracted from 0..255 pixels: M or 'R,G,B'."),
    click.option("--std", callback=_floats, help="Divisor after the mean: S or 'R,G,B'."),
    click.option("--color", type=click.Choice(COLOR_ORDERS, case_sensitive=False), help="Channel order the model expects."),
    click.option("--resize", type=click.Choice(RESIZE_POLICIES), help="How images are fitted to the input size."),
]

FILE_OPTIONS = [  # only a model file read by the Runtime has these (a Keras source does not)
    click.option("--crop-ratio", type=click.FloatRange(0, 1, min_open=True),
                 help="Share of the shorter side kept by --resize crop (e.g. 0.875)."),
    click.option("--input-size", callback=_size, metavar="N|HxW",
                 help="Input size in pixels, for models whose input shape is dynamic."),
    click.option("--output", type=click.Choice(OUTPUT_KINDS),
                 help="What the model outputs: probabilities, logits (softmax applied) or auto."),
]


unsafe_load_option = click.option(
    "--unsafe-load", is_flag=True,
    help="Load a Keras model even if code in it would run (Lambda layers, custom objects, SavedModel graphs): "
         "only for files you trust.")


def device_options(many: bool = False) -> Callable[[Any], Any]:
    """``--device`` (one, or with ``many`` a comma-separated list) and ``--threads``."""
    help_ = f"Device(s), comma-separated: {', '.join(DEVICES)}." if many else f"Where to run: {', '.join(DEVICES)}."
    return _apply([
        click.option("--device", default="cpu", show_default=True, callback=_devices(many), help=help_),
        click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: the runtime's)."),
    ])


def model_argument(nargs: int = 1) -> Callable[[Any], Any]:
    """MODEL (or MODELS...): must exist; a missing one is ``ModelNotFoundError`` in every command."""
    name = "model" if nargs == 1 else "models"
    return click.argument(name, nargs=nargs, required=True, type=click.Path(), callback=_existing)


def json_option(what: str) -> Callable[[Any], Any]:
    """``--json PATH``: write ``what`` as JSON to PATH, ``-`` for stdout."""
    return click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True), metavar="PATH",
                        help=f"Write {what} as JSON to PATH ('-' = stdout).")


def top_k_option() -> Callable[[Any], Any]:
    """``--top-k``, with the same default in every command."""
    return click.option("--top-k", type=click.IntRange(min=1), default=TOP_K, show_default=True,
                        help="How many classes to report.")


def out_option(default: str | None, help: str, file: bool = False) -> Callable[[Any], Any]:
    """``-o/--out``: where a command writes its output file (or folder)."""
    kind = click.Path(dir_okay=False) if file else click.Path(file_okay=False)
    return click.option("-o", "--out", type=kind, default=default, show_default=default is not None, help=help)


def write_json(obj: Any, path: str, lines: bool = False) -> None:
    """``obj`` as indented JSON (or, with ``lines``, a list as one object per line) to PATH or stdout (``-``)."""
    text = "".join(json.dumps(o) + "\n" for o in obj) if lines else json.dumps(obj, indent=2) + "\n"
    if path == "-":
        click.echo(text, nl=False)
        return
    atomic_write_text(path, text)
    click.echo(f"wrote {path}", err=True)


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorator(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f
    return decorator


model_options = _apply(MODEL_OPTIONS)
runtime_options = _apply(MODEL_OPTIONS + FILE_OPTIONS)


def runtime_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the shared options out of a command's kwargs as ``Runtime`` keyword arguments."""
    out = {k: kwargs.pop(k, None) for k in ("labels", "mean", "std", "color", "resize", "crop_ratio", "input_size",
                                            "output")}
    if "device" in kwargs:
        out["device"] = kwargs.pop("device")
    if "threads" in kwargs:
        out["num_threads"] = kwargs.pop("threads")
    return {k: v for k, v in out.items() if v is not None}

