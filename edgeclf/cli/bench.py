"""``edgeclf bench MODEL...``: latency, throughput, memory, size and accuracy per file and device."""
from __future__ import annotations

import sys
from typing import Any

import click

from edgeclf.runtime.devices import DEVICES
from edgeclf.artifact.formats import QUANT_MODES
from edgeclf.cli.options import device_options, json_option, model_argument, runtime_kwargs, runtime_options, \
    write_json


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated whole numbers, got {value!r}") from None
    if not out or min(out) < 1:
        raise click.BadParameter(f"batch sizes must be at least 1, got {value!r}")
    return out


def _quants(ctx: click.Context, param: click.Parameter, value: str) -> str:
    for name in value.replace(" ", "").lower().split(","):
        if name not in QUANT_MODES:
            raise click.BadParameter(f"{name!r} is not one of {', '.join(QUANT_MODES)}")
    return value


@click.command("bench")
@model_argument(nargs=-1)
@device_options(many=True)
@click.option("--runs", type=click.IntRange(min=1), default=200, show_default=True, help="Timed runs (at batch 1).")
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True, help="Untimed runs first.")
@click.option("--max-secs", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Stop the timed runs (and each batch size) after this long.")
@click.option("--batch", default="1", show_default=True, callback=_ints,
              help="Batch sizes for throughput, comma-separated (above 1 only for dynamic-batch models).")
@click.option("--data", type=click.Path(exists=True, file_okay=False),
              help="Class-per-folder images: adds top-1/top-5 accuracy and agreement with the first float model.")
@click.option("--quant", default="fp32,int8", show_default=True, callback=_quants,
              help="For a run folder: the quantisation modes to convert to (where each format has them).")
@json_option("the records")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False), help="Write the records as CSV.")
@click.option("--plot", "plot_out", type=click.Path(dir_okay=False), help="Latency vs accuracy (or size) PNG.")
@click.option("--compare", "reference", type=click.Path(exists=True, dir_okay=False),
              help="Reference JSON from an earlier --json: print p50 ratios, fail when slower than --tolerance.")
@click.option("--tolerance", type=click.FloatRange(min=0), default=0.10, show_default=True,
              help="Allowed slow-down for --compare (0.10 = 10 %).")
@click.option("--pick", "pick_mode", is_flag=True,
              help="Choose the fastest file, backend, device and thread count within --max-drop; write deploy.json.")
@click.option("--max-drop", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="With --pick: allowed drop from the float file in percentage points: accuracy with --data, else "
                   "the share of decisive check images whose top-1 flips (the convert gate's measure).")
@click.option("--samples", type=click.Path(exists=True, file_okay=False),
              help="With --pick and no --data: check images to judge each file against the float file on "
                   "(default: 64 synthetic frames, which few models are decisive on).")
@click.option("--deploy", "deploy_out", type=click.Path(dir_okay=False),
              help="With --pick: where to write deploy.json (default: next to the picked file).")
@click.option("--wide", is_flag=True, help="Every column (init and first-call times, top-5, throughput per batch).")
@runtime_options
def cmd(models: tuple[str, ...], device: list[str], threads: int | None, runs: int, warmup: int, max_secs: float,
        batch: list[int], data: str | None, quant: str, json_path: str | None, csv_out: str | None,
        plot_out: str | None, reference: str | None, tolerance: float, pick_mode: bool, max_drop: float,
        samples: str | None, deploy_out: str | None, wide: bool, **kwargs: Any) -> None:
    """Benchmark MODELS (.tflite / .onnx files, or a training run folder converted to every format).

    With --pick: try every file on every backend, device and thread count, and choose the fastest whose
    answers stay within --max-drop of the float file, judged as the convert gate judges (flips among decisive
    images, the accuracy drop on --data; 95 % bounds) (devices: all unless --device is given; threads: 1 to
    the number of cores unless --threads is given; --runs timed calls per candidate, --max-secs for all of them)."""
    from edgeclf.benchmark import report as bench_report
    from edgeclf.benchmark.session import bench, compare, load_reference, problems

    if plot_out:
        bench_report.require_matplotlib()
    if pick_mode:
        if reference or batch != [1]:
            raise click.UsageError("--pick measures batch 1 and has no --compare")
        _pick(models, device, threads, runs, warmup, max_secs, data, quant, json_path, csv_out, plot_out, max_drop,
              samples, deploy_out, runtime_kwargs(kwargs))
        return
    ref = load_reference(reference) if reference else None
    records = bench(models, device=device, threads=threads, runs=runs, warmup=warmup, max_secs=max_secs, batch=batch,
                    data=data, quant=quant, **runtime_kwargs(kwargs))
    comparisons = compare(records, ref, tolerance) if ref is not None else None
    bench_report.print_table(records, comparisons, wide=wide, stderr=json_path == "-")
    if json_path:
        write_json(records, json_path)  # the format --compare reads back
    for path, write in ((csv_out, bench_report.write_csv), (plot_out, bench_report.write_plot)):
        if path:
            write(records, path)
            click.echo(f"wrote {path}", err=True)
    failed = problems(records, device)
    if comparisons:
        failed += [f"{c['model']} ({c['format']}, {c['device']}): p50 {c['p50_ms']} ms is {c['ratio']:.2f}x the "
                   f"reference {c['ref_p50_ms']} ms (tolerance {tolerance:.0%})"
                   for c in comparisons if c["verdict"] == "slower"]
    for line in failed:
        click.echo(f"edgeclf: {line}", err=True)
    if failed:
        sys.exit(1)


def _pick(models: tuple[str, ...], device: list[str], threads: int | None, runs: int, warmup: int, max_secs: float,
          data: str | None, quant: str, json_path: str | None, csv_out: str | None, plot_out: str | None,
          max_drop: float, samples: str | None, deploy_out: str | None, runtime: dict[str, Any]) -> None:
    """``bench --pick``: measure, print, write; exit 1 when nothing meets the bound."""
    from edgeclf.benchmark import pick_report
    from edgeclf.benchmark.pick import pick
    from edgeclf.benchmark.report import write_csv

    explicit = click.get_current_context().get_parameter_source("device") != click.core.ParameterSource.DEFAULT
    result = pick(models, device=device if explicit else DEVICES, threads=threads, max_drop=max_drop, data=data,
                  samples=samples, runs=runs, warmup=warmup, max_secs=max_secs, quant=quant, deploy=deploy_out,
                  **runtime)
    pick_report.print_pick(result, stderr=json_path == "-")
    if json_path:
        write_json(result.to_dict(), json_path)
    for path, write in ((plot_out, pick_report.write_pick_plot),
                        (csv_out, lambda r, p: write_csv(r.rows, p))):
        if path:
            write(result, path)
            click.echo(f"wrote {path}", err=True)
    if result.picked is None:
        click.echo(f"edgeclf: {result.message}", err=True)
        sys.exit(1)
