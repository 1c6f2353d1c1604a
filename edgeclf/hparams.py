"""Training hyperparameters as one dataclass (saved with every run as hparams.json)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from .data.augment import Augment
from .errors import EdgeclfError


@dataclass
class HParams:
    """Everything ``train`` needs besides the data; epochs of each phase run in this order:
    head only (``freeze_epochs``), fine-tune (the rest of ``epochs``), pruning (``prune_epochs`` when
    ``prune`` > 0), quantisation-aware training (``qat_epochs`` when ``qat``)."""

    arch: str = "efficientnet_lite0"   # offline ImageNet weights; mobilenet_v2 downloads them
    alpha: float | None = None            # mobilenet_v2 width; None = the registry's default
    img_size: int | None = None           # None = the architecture's default resolution
    weights: str | None = "imagenet"      # imagenet | None | path to a weights file
    dropout: float = 0.2
    epochs: int = 10                      # head + fine-tune; 0 = only prune/QAT a model given by ``weights``
    freeze_epochs: int = 3
    fine_tune_fraction: float = 0.3       # top share of backbone blocks unfrozen in stage two
    batch_size: int = 32
    lr: float = 1e-3
    fine_tune_lr: float | None = None     # None = lr / 10 (pretrained) or lr (from scratch)
    label_smoothing: float = 0.1
    early_stopping: int = 0               # patience in epochs on val_loss; 0 = off
    class_weights: str = "auto"           # auto (balanced when classes differ in size) | none
    prune: float = 0.0                    # target sparsity; 0 = no pruning
    prune_epochs: int = 2
    prune_block: int = 1                  # > 1: 1x1-conv and dense kernels lose runs of this many input channels
    qat: bool = False
    qat_epochs: int = 2
    val_split: float = 0.1
    test_split: float = 0.1
    calib_split: float = 0.05
    calib_max: int = 500
    augment: Augment = field(default_factory=Augment)
    strategy: str | None = None           # None | mirrored | multiworker
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        if isinstance(self.weights, str) and self.weights.lower() == "none":
            self.weights = None
        problems = [msg for bad, msg in [
            (self.epochs < 0, "epochs must be >= 0"),
            (self.epochs == 0 and not (self.weights and (self.prune or self.qat)),
             "epochs 0 (optimise only) needs weights to start from and prune or qat"),
            (not 0 <= self.freeze_epochs <= self.epochs, "freeze_epochs must be between 0 and epochs"),
            (self.batch_size < 1, "batch_size must be >= 1"),
            (self.lr <= 0, "lr must be > 0"),
            (not 0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (not 0 <= self.prune < 1, "prune (target sparsity) must be in [0, 1)"),
            (self.prune > 0 and self.prune_epochs < 1, "prune_epochs must be >= 1 when pruning"),
            (self.prune_block < 1, "prune_block must be >= 1"),
            (self.qat and self.qat_epochs < 1, "qat_epochs must be >= 1 with qat"),
            (self.class_weights not in ("auto", "none"), "class_weights must be auto or none"),
            (self.strategy not in (None, "mirrored", "multiworker"), "strategy must be mirrored or multiworker"),
            (not 0 <= self.fine_tune_fraction <= 1, "fine_tune_fraction must be in [0, 1]"),
        ] if bad]
        if problems:
            raise EdgeclfError("invalid hyperparameters: " + "; ".join(problems))

    @property
    def pretrained(self) -> bool:
        return self.weights is not None

    @property
    def second_lr(self) -> float:
        """Learning rate after the head-only stage (fine-tune, pruning, QAT)."""
        if self.fine_tune_lr is not None:
            return self.fine_tune_lr
        return self.lr / 10 if self.pretrained else self.lr

    def phases(self) -> list[tuple[str, int, int]]:
        """(name, first epoch, end epoch) of each phase that runs, in global epoch numbers."""
        plan = [("head", self.freeze_epochs), ("finetune", self.epochs - self.freeze_epochs),
                ("prune", self.prune_epochs if self.prune else 0), ("qat", self.qat_epochs if self.qat else 0)]
        out, start = [], 0
        for name, n in plan:
            if n:
                out.append((name, start, start + n))
                start += n
        return out

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HParams":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(text).items() if k in known})
