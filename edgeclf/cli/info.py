"""``edgeclf info MODEL``: what a model file is and how edgeclf will feed it.

A file compiled for a device that is not asked for (or not present) is described from its bytes alone, so an
``_edgetpu.tflite`` can be inspected on a machine without a Coral."""
from __future__ import annotations

import json
from typing import Any

import click

from edgeclf.cli.options import device_options, json_option, model_argument, runtime_kwargs, runtime_options, write_json

NEEDS = {"coral": "compiled for the Edge TPU: run with --device coral"}


def _describe(model: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The file's own description, completed by a Runtime on the device when the file can run there."""
    from edgeclf.artifact.describe import describe_file
    from edgeclf.errors import DeviceUnavailableError
    from edgeclf.runtime import Runtime

    d = describe_file(model)
    options = runtime_kwargs(kwargs)
    needs = d["needs_device"]
    if needs and options.get("device", "cpu") != needs:
        return d | {"backend": None, "note": NEEDS[needs]}
    try:
        return d | Runtime(model, **options).describe()
    except DeviceUnavailableError as exc:
        return d | {"backend": None, "note": str(exc)}


def _echo_tensors(d: dict[str, Any]) -> None:
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            q = f" quant scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            click.echo(f"{kind[:-1]:<10} {t['name']} {list(t['shape'])} {t['dtype']}{q}")


@click.command("info")
@model_argument()
@runtime_options
@device_options()
@json_option("the description")
def cmd(model: str, json_path: str | None, **kwargs: Any) -> None:
    """Show MODEL's metadata, inputs and outputs (dtype, quantisation), size and backend."""
    d = _describe(model, kwargs)
    if json_path:
        write_json(d, json_path)
    if json_path == "-":
        return
    click.echo(f"model      {d['model']} ({d['format']}, {d['size_bytes']:,} bytes)")
    click.echo(f"backend    {d['backend']} on {d['device']}" if d["backend"] else f"backend    none opened: {d['note']}")
    _echo_tensors(d)
    meta = d["metadata"]
    if meta is not None:
        pre = meta["preprocess"]
        click.echo(f"preprocess {pre['input_size'][0]}x{pre['input_size'][1]} {pre['layout']} {pre['color']} "
                   f"mean={pre['mean']} std={pre['std']} resize={pre['resize']}"
                   + (f" crop_ratio={pre['crop_ratio']}" if pre["resize"] == "crop" else ""))
        labels = meta["labels"]
        click.echo(f"labels     {len(labels)}: {', '.join(labels[:8])}{' ...' if len(labels) > 8 else ''}")
    if d["has_edgeclf_metadata"]:
        click.echo(f"made by    edgeclf {meta['edgeclf_version']} on {meta['created']} from {meta['source'] or '?'} "
                   f"({meta['quantization']})")
        for key, value in meta["extra"].items():
            click.echo(f"{key:<10} {json.dumps(value)[:200]}")
    standard = d["standard_metadata"]
    if standard:
        click.echo(f"standard   TFLite metadata: {standard['labels']} packed labels, mean={standard['mean']} "
                   f"std={standard['std']} colour={standard['color'] or 'unknown'}"
                   + (" (the edgeclf record is used; MediaPipe and the Task Library read this)"
                      if d["has_edgeclf_metadata"] else "; options override it"))
    if not d["has_edgeclf_metadata"] and not standard:
        click.echo("metadata   none in the file (defaults and command-line options used)")
