"""``edgeclf info MODEL``: what a model file is and how edgeclf will feed it."""
from __future__ import annotations

import json
from typing import Any

import click

from edgeclf.cli.options import device_options, model_options, runtime_kwargs


@click.command("info")
@click.argument("model", type=click.Path())
@model_options
@device_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a summary.")
def cmd(model: str, as_json: bool, **kwargs: Any) -> None:
    """Show MODEL's metadata, inputs and outputs (dtype, quantisation), size and backend."""
    from edgeclf.runtime import Runtime
    d = Runtime(model, **runtime_kwargs(kwargs)).describe()
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    meta, pre = d["metadata"], d["metadata"]["preprocess"]
    click.echo(f"model      {d['model']} ({d['format']}, {d['size_bytes']:,} bytes)")
    click.echo(f"backend    {d['backend']} on {d['device']}")
    for kind in ("inputs", "outputs"):
        for t in d[kind]:
            q = f" quant scale={t['scale']:.6g} zero_point={t['zero_point']}" if t["scale"] else ""
            click.echo(f"{kind[:-1]:<10} {t['name']} {list(t['shape'])} {t['dtype']}{q}")
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
    elif d["has_tflite_metadata"]:
        click.echo("metadata   standard TFLite metadata (labels, normalisation, colour); options override it")
    else:
        click.echo("metadata   none in the file (defaults and command-line options used)")
