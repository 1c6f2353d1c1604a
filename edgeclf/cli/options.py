"""Options shared by every command that loads a model: how to read a model made elsewhere."""
from __future__ import annotations

from typing import Any, Callable

import click

from edgeclf.artifact import COLOR_ORDERS, RESIZE_POLICIES
from edgeclf.runtime.devices import DEVICES


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


MODEL_OPTIONS = [
    click.option("--labels", type=click.Path(dir_okay=False), help="Labels file (one per line), for models made elsewhere."),
    click.option("--mean", callback=_floats, help="Mean subtracted from 0..255 pixels: M or 'R,G,B'."),
    click.option("--std", callback=_floats, help="Divisor after the mean: S or 'R,G,B'."),
    click.option("--color", type=click.Choice(COLOR_ORDERS, case_sensitive=False), help="Channel order the model expects."),
    click.option("--resize", type=click.Choice(RESIZE_POLICIES), help="How images are fitted to the input size."),
]

DEVICE_OPTIONS = [
    click.option("--device", type=click.Choice(DEVICES), default="cpu", show_default=True, help="Where to run."),
    click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (default: the runtime's)."),
]


unsafe_load_option = click.option(
    "--unsafe-load", is_flag=True,
    help="Load a Keras model even if code in it would run (Lambda layers, custom objects, SavedModel graphs): "
         "only for files you trust.")


def _apply(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def decorator(f: Any) -> Any:
        for opt in reversed(options):
            f = opt(f)
        return f
    return decorator


model_options = _apply(MODEL_OPTIONS)
device_options = _apply(DEVICE_OPTIONS)


def runtime_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the shared options out of a command's kwargs as ``Runtime`` keyword arguments."""
    out = {k: kwargs.pop(k, None) for k in ("labels", "mean", "std", "color", "resize")}
    if "device" in kwargs:
        out["device"] = kwargs.pop("device")
    if "threads" in kwargs:
        out["num_threads"] = kwargs.pop("threads")
    return {k: v for k, v in out.items() if v is not None}
