"""Training settings split the way MediaPipe Model Maker splits them: the model spec, the training
hyperparameters, the data splits and the distribution strategy, saved with every run as hparams.json.

``Settings.from_flat`` takes the flat keyword names ``train`` and the CLI use and checks every name and value
(the model ones against the registry) when the settings are made: before any data loads or file is written.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from edgeclf.data.augment import Augment
from edgeclf.errors import EdgeclfError
from edgeclf.models import ModelConfigError, check

DEFAULT_FREEZE_EPOCHS = 3
STRATEGIES = ("mirrored", "multiworker")


def _refuse(problems: list[tuple[bool, str]], what: str) -> None:
    bad = [msg for failed, msg in problems if failed]
    if bad:
        raise EdgeclfError(f"invalid {what}: " + "; ".join(bad))


@dataclass
class ModelOptions:
    """Which network is built: a registry name, its options, input size, starting weights and head dropout."""

    arch: str = "efficientnet_lite0"   # offline ImageNet weights; mobilenet_v2 downloads them
    alpha: float | None = None         # mobilenet_v2 width; None = the registry's default
    img_size: int | None = None        # None = the architecture's default resolution
    weights: str | None = "imagenet"   # imagenet | None | path to a weights file
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.weights, str) and self.weights.lower() == "none":
            self.weights = None
        try:
            check(self.arch, self.img_size, self.dropout, **self.build_options)
        except ModelConfigError as exc:
            raise EdgeclfError(f"invalid model settings: {exc}") from None

    @property
    def build_options(self) -> dict[str, Any]:
        """Registry options passed to ``models.build`` (only those set)."""
        return {"alpha": self.alpha} if self.alpha is not None else {}

    @property
    def pretrained(self) -> bool:
        return self.weights is not None


@dataclass
class HParams:
    """How the model is trained. Phases run in this order: head only (``freeze_epochs``), fine-tune (the rest of
    ``epochs``), pruning (``prune_epochs`` when ``prune`` > 0), clustering (``cluster_epochs`` when ``cluster`` > 0;
    0 epochs keeps the k-means centroids as they start), quantisation-aware training (``qat_epochs``, with ``qat`` or
    ``cluster``: the int8 file is what keeps the clusters, so clustering always ends in cluster-preserving QAT)."""

    epochs: int = 10                      # head + fine-tune; 0 = only prune/QAT a model given by ``weights``
    freeze_epochs: int | None = None      # None = 3, or fewer when ``epochs`` is short (at least one fine-tunes)
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
    cluster: int = 0                      # centroids per conv/dense kernel; 0 = no clustering
    cluster_epochs: int = 1
    qat: bool = False
    qat_epochs: int = 2
    augment: Augment = field(default_factory=Augment)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.augment, dict):
            self.augment = Augment(**self.augment)
        if self.freeze_epochs is None:
            self.freeze_epochs = min(DEFAULT_FREEZE_EPOCHS, max(0, self.epochs - 1))
        _refuse([
            (self.epochs < 0, "epochs must be >= 0"),
            (not 0 <= self.freeze_epochs <= self.epochs, f"freeze_epochs must be between 0 and epochs ({self.epochs})"),
            (self.batch_size < 1, "batch_size must be >= 1"),
            (self.lr <= 0, "lr must be > 0"),
            (self.fine_tune_lr is not None and self.fine_tune_lr <= 0, "fine_tune_lr must be > 0"),
            (not 0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)"),
            (not 0 <= self.prune < 1, "prune (target sparsity) must be in [0, 1)"),
            (self.prune > 0 and self.prune_epochs < 1, "prune_epochs must be >= 1 when pruning"),
            (self.prune_block < 1, "prune_block must be >= 1"),
            (self.cluster != 0 and not (2 if self.prune == 0 else 3) <= self.cluster <= 256,
             f"cluster must be 0 (off) or {2 if self.prune == 0 else 3}..256 centroids per kernel"
             + (" (one is kept for the pruned zeros)" if self.prune else "")),
            (self.cluster_epochs < 0, "cluster_epochs must be >= 0"),
            (self.quantize_aware and self.qat_epochs < 1, "qat_epochs must be >= 1 with qat or cluster"),
            (self.class_weights not in ("auto", "none"), "class_weights must be auto or none"),
            (not 0 <= self.fine_tune_fraction <= 1, "fine_tune_fraction must be in [0, 1]"),
        ], "hyperparameters")

    @property
    def quantize_aware(self) -> bool:
        """Whether a QAT phase runs: asked for, or implied by clustering."""
        return self.qat or self.cluster > 0

    def phases(self) -> list[tuple[str, int, int]]:
        """(name, first epoch, end epoch) of each phase that runs, in global epoch numbers."""
        assert self.freeze_epochs is not None
        plan = [("head", self.freeze_epochs), ("finetune", self.epochs - self.freeze_epochs),
                ("prune", self.prune_epochs if self.prune else 0), ("cluster", self.cluster_epochs if self.cluster else 0),
                ("qat", self.qat_epochs if self.quantize_aware else 0)]
        out, start = [], 0
        for name, n in plan:
            if n:
                out.append((name, start, start + n))
                start += n
        return out


@dataclass
class SplitOptions:
    """How a data set is split: validation, test and calibration fractions, and the calibration cap."""

    val: float = 0.1
    test: float = 0.1
    calib: float = 0.05
    calib_max: int = 500

    def __post_init__(self) -> None:
        _refuse([(not 0 < self.val < 1, "val must be in (0, 1)"), (not 0 < self.test < 1, "test must be in (0, 1)"),
                 (not 0 < self.calib < 1, "calib must be in (0, 1)"),
                 (self.val + self.test + self.calib >= 1, "val + test + calib must leave images to train on"),
                 (self.calib_max < 1, "calib_max must be >= 1")], "data splits")


@dataclass
class Settings:
    """Everything ``train`` needs besides the data."""

    model: ModelOptions = field(default_factory=ModelOptions)
    hparams: HParams = field(default_factory=HParams)
    splits: SplitOptions = field(default_factory=SplitOptions)
    strategy: str | None = None           # None | mirrored | multiworker

    def __post_init__(self) -> None:
        _refuse([(self.strategy not in (None, *STRATEGIES), f"strategy must be one of {', '.join(STRATEGIES)}"),
                 (self.hparams.epochs == 0 and not (self.model.pretrained and (self.hparams.prune or self.hparams.quantize_aware)),
                  "epochs 0 (optimise only) needs weights to start from and prune, cluster or qat")], "settings")

    @property
    def second_lr(self) -> float:
        """Learning rate after the head-only stage (fine-tune, pruning, QAT)."""
        if self.hparams.fine_tune_lr is not None:
            return self.hparams.fine_tune_lr
        return self.hparams.lr / 10 if self.model.pretrained else self.hparams.lr

    @classmethod
    def from_flat(cls, **values: Any) -> "Settings":
        """Settings from flat names (``arch``, ``epochs``, ``val_split``, ``strategy`` ...); unknown names are refused."""
        groups: dict[str, dict[str, Any]] = {"model": {}, "hparams": {}, "splits": {}}
        names = {**{f.name: ("model", f.name) for f in dataclasses.fields(ModelOptions)},
                 **{f.name: ("hparams", f.name) for f in dataclasses.fields(HParams)},
                 **{f"{f.name}_split" if f.name != "calib_max" else f.name: ("splits", f.name)
                    for f in dataclasses.fields(SplitOptions)}}
        strategy = values.pop("strategy", None)
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise EdgeclfError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        for key, value in values.items():
            group, name = names[key]
            groups[group][name] = value
        return cls(ModelOptions(**groups["model"]), HParams(**groups["hparams"]), SplitOptions(**groups["splits"]),
                   strategy)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Settings":
        d = json.loads(text)
        return cls(ModelOptions(**d["model"]), HParams(**d["hparams"]), SplitOptions(**d["splits"]), d.get("strategy"))
