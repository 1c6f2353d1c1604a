"""``edgeclf demo``: the whole pipeline on built-in data, with a report."""
from __future__ import annotations

import click

from edgeclf.cli.options import out_option


@click.command("demo")
@out_option("runs/demo", "Folder for the run, the converted files and the report (re-running resumes or refreshes it).")
@click.option("--quick", is_flag=True, help="A small subset (1,000 images) at 64 px: the short version the tests run.")
@click.option("--arch", default="efficientnet_lite0", show_default=True, help="Architecture (see edgeclf.models).")
@click.option("--weights", default="imagenet", show_default=True,
              help="imagenet (offline for EfficientNet-Lite0/1/2), none, or a weights file.")
def cmd(out: str, quick: bool, arch: str, weights: str) -> None:
    """Train, optimise, convert, benchmark and explain a classifier on Fashion-MNIST; write report.md/.html."""
    from edgeclf.demo.pipeline import demo
    demo(out, quick=quick, arch=arch, weights=None if weights.lower() == "none" else weights)
