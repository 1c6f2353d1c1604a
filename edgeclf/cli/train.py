"""``edgeclf train``: fine-tune MobileNetV2 / EfficientNet-Lite on a data set, with optional pruning, clustering and QAT."""
from __future__ import annotations

from typing import Any

import click

from edgeclf.cli.options import out_option


@click.command("train")
@click.argument("data")
@click.option("--arch", default="efficientnet_lite0", show_default=True, help="Architecture (edgeclf.models registry).")
@click.option("--alpha", type=float, help="MobileNetV2 width multiplier (0.35-1.4).")
@click.option("--img-size", type=click.IntRange(min=32), help="Input resolution (default: the architecture's).")
@click.option("--epochs", type=click.IntRange(min=0), default=10, show_default=True,
              help="Head + fine-tune epochs (0: only --prune/--cluster/--qat the model given by --weights).")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Learning rate of the head-only stage.")
@click.option("--fine-tune-lr", type=float, help="Learning rate after it (default lr/10 when pretrained).")
@click.option("--weights", default="imagenet", show_default=True, help="imagenet, none, or a weights file.")
@click.option("--freeze-epochs", type=click.IntRange(min=0), default=None,
              help="Head-only epochs (default 3, fewer when --epochs is short).")
@click.option("--label-smoothing", type=click.FloatRange(0, 1, max_open=True), default=0.1, show_default=True)
@click.option("--early-stopping", type=click.IntRange(min=0), default=0, show_default=True,
              help="Patience in epochs on validation loss (0: off).")
@click.option("--class-weights", type=click.Choice(["auto", "none"]), default="auto", show_default=True)
@click.option("--prune", type=click.FloatRange(0, 1, max_open=True), default=0.0, help="Target sparsity, e.g. 0.5.")
@click.option("--prune-epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--prune-block", type=click.IntRange(min=1), default=1, show_default=True,
              help="Prune 1x1-conv and dense kernels in runs of N input channels: the file gzips smaller (1: weight by weight).")
@click.option("--cluster", type=click.IntRange(min=0, max=256), default=0, show_default=True,
              help="Cluster every conv/dense kernel to N shared values, then cluster-preserving QAT (sparsity-"
                   "preserving too with --prune): the int8 file compresses smaller (0: off).")
@click.option("--cluster-epochs", type=click.IntRange(min=0), default=1, show_default=True,
              help="Clustering epochs before QAT (0: QAT trains the k-means centroids).")
@click.option("--qat", is_flag=True, help="Quantisation-aware training after fine-tuning (and pruning).")
@click.option("--qat-epochs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--mixup", type=click.FloatRange(min=0), default=0.0, help="Mixup Beta concentration (0: off).")
@click.option("--cutmix", type=click.FloatRange(0, 1), default=0.0, help="Cutmix probability per batch (0: off).")
@out_option(None, "Run folder (default runs/<arch>-<time>).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in --out.")
@click.option("--strategy", type=click.Choice(["mirrored", "multiworker"]), help="tf.distribute strategy.")
@click.option("--limit", type=click.IntRange(min=1), help="Train on a stratified subset of this many images.")
@click.option("--seed", type=int, default=0, show_default=True)
def cmd(data: str, out: str | None, resume: bool, limit: int | None, mixup: float, cutmix: float, **hp: Any) -> None:
    """Train on DATA: a class-per-folder directory or fashion_mnist / digits / mnist / cifar10."""
    from edgeclf.data.augment import Augment
    from edgeclf.training.trainer import train

    if (resume or hp.get("strategy") == "multiworker") and not out:
        raise click.UsageError(f"--{'resume' if resume else 'strategy multiworker'} needs --out RUN_FOLDER "
                               "(every worker must name the same run)")
    hp = {k: v for k, v in hp.items() if v is not None}
    run = train(data, out=out, resume=resume, limit=limit, augment=Augment(mixup=mixup, cutmix=cutmix), **hp)
    import json
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    line = f"test accuracy {test['accuracy']:.4f} on {test['samples']} images"
    if metrics.get("sparsity") is not None:
        line += f", sparsity {metrics['sparsity']:.3f} (target {metrics['target_sparsity']})"
    click.echo(f"{line}\nrun folder: {run}")
