"""``train``: fine-tune an edgeclf.models architecture on a data set, optionally prune, cluster and train it
quantisation-aware, and write a run folder (model.keras, metadata, hparams, metrics, history, plots,
calib.npz, test.npz). Every epoch is checkpointed, so ``resume=True`` continues an interrupted run."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeclf.artifact import Metadata, Preprocess
from edgeclf.data import Dataset, Splits, load_dataset, split
from edgeclf.errors import EdgeclfError
from edgeclf.fileio import atomic_path, atomic_write_text
from edgeclf.metrics import classification_report, confusion_view, summary
from edgeclf.models import build, preprocess_for, set_trainable
from edgeclf.training.settings import Settings


STATE_FILE = "state.json"
SETTINGS_FILE = "hparams.json"
CHECKPOINTS = "checkpoints"
FROM_SCRATCH_BN_MOMENTUM = 0.9
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy")
log = logging.getLogger("edgeclf")
RANGE_BATCHES = 8  # batches that set the QAT activation ranges before the first step


def train(data: str | os.PathLike | Dataset | Splits, arch: str | None = None, out: str | os.PathLike | None = None,
          resume: bool = False, limit: int | None = None, callbacks: Sequence[Any] = (), verbose: int = 1,
          **settings: Any) -> Path:
    """Train on ``data`` (folder, built-in name, ``Dataset`` or ready ``Splits``) and return the run folder.

    ``settings`` are the flat names of ``Settings`` (epochs, batch_size, lr, qat, prune, val_split, strategy, ...),
    checked before any data loads. With ``resume`` the run's saved settings are used and training continues
    after the last completed epoch.
    ``callbacks`` are extra Keras callbacks (called after each epoch's checkpoint is written).
    """
    if arch:
        settings["arch"] = arch
    fresh = Settings.from_flat(**settings)  # a bad name or value fails here, before anything else
    run = Path(out) if out is not None else Path("runs") / f"{fresh.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
    work = _worker_folder(run, resume)
    st, state = _start(work, resume, fresh)
    strategy = _strategy(st.strategy)  # before any TF op: multi-worker collectives are configured at startup
    splits = data if isinstance(data, Splits) else _splits(data, st, limit)
    if not resume:  # only once the data loaded: a bad data set leaves no run folder behind
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(work / SETTINGS_FILE, st.to_json())
    pre = preprocess_for(st.model.arch, st.model.img_size)
    trainer = _Trainer(st, splits, pre, work, state, list(callbacks), verbose, strategy)
    model, history = trainer.fit()
    _write_run(work, st, splits, pre, model, history, trainer.replicas)
    shutil.rmtree(work / CHECKPOINTS, ignore_errors=True)
    (work / STATE_FILE).unlink(missing_ok=True)
    if work != run:  # a non-chief worker's copy: it took part in every save, the chief's folder is the result
        shutil.rmtree(work, ignore_errors=True)
    return run


def _worker_folder(run: Path, resume: bool) -> Path:
    """Where this process writes: ``run``, or for a non-chief worker of a TF_CONFIG cluster a scratch folder
    of its own (every worker takes part in checkpoints and saves; only the chief's land in ``run``)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster, task = config.get("cluster", {}), config.get("task", {})
    kind, index = task.get("type"), int(task.get("index", 0))
    chief = kind in (None, "chief") or (kind == "worker" and index == 0 and "chief" not in cluster)
    if chief:
        return run
    scratch = Path(tempfile.gettempdir()) / f"edgeclf-{run.resolve().name}-{kind}{index}"
    if resume and not scratch.is_dir():
        raise EdgeclfError(f"{run}: this worker ({kind} {index}) has no scratch folder {scratch} to resume from")
    if not resume:
        shutil.rmtree(scratch, ignore_errors=True)
    return scratch


def _start(run: Path, resume: bool, fresh: Settings) -> tuple[Settings, dict[str, Any]]:
    """Settings and saved progress: fresh (``train`` writes hparams.json) or read back for ``resume``."""
    if resume:
        if not (run / SETTINGS_FILE).is_file() or not (run / STATE_FILE).is_file():
            raise EdgeclfError(f"{run}: nothing to resume (no {SETTINGS_FILE} / {STATE_FILE} of an unfinished run)")
        return Settings.from_json((run / SETTINGS_FILE).read_text()), json.loads((run / STATE_FILE).read_text())
    if (run / SETTINGS_FILE).exists():
        raise EdgeclfError(f"{run}: already holds a run; pass resume=True (--resume) or choose another output folder")
    return fresh, {"epoch": 0, "history": [], "checkpoint": None}


def _splits(data: str | os.PathLike | Dataset, st: Settings, limit: int | None) -> Splits:
    ds = data if isinstance(data, Dataset) else load_dataset(data, limit=limit, seed=st.hparams.seed)
    sp = st.splits
    return split(ds, sp.val, sp.test, sp.calib, st.hparams.seed, sp.calib_max)


def _strategy(name: str | None) -> Any:
    """The tf.distribute strategy for ``--strategy``: mirrored over every local GPU (else every logical CPU
    device), or multi-worker with the cluster and this worker's index taken from TF_CONFIG."""
    import tensorflow as tf

    if name == "mirrored":
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([d.name for d in devices])
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return None


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced weights n / (k * count_c): rare classes count more, a balanced set gets all ones."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return {c: float(len(labels) / (num_classes * counts[c])) if counts[c] else 0.0 for c in range(num_classes)}


def _checkpoint_callback(trainer: "_Trainer", phase: str) -> Any:
    """A Keras callback that, after each epoch, records its history row and checkpoints the trainer."""
    import tf_keras as keras

    class EpochCheckpoint(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            row = {"epoch": epoch, "phase": phase, "lr": float(keras.backend.get_value(self.model.optimizer.lr))}
            row.update({k: float(v) for k, v in (logs or {}).items() if k in HISTORY_KEYS})
            trainer.history.append(row)
            trainer.checkpoint(epoch + 1)

    return EpochCheckpoint()


class _Trainer:
    """Runs the phases (head, finetune, prune, cluster, qat) of one run, checkpointing after every epoch."""

    def __init__(self, st: Settings, splits: Splits, pre: Preprocess, run: Path, state: dict[str, Any],
                 callbacks: list[Any], verbose: int, strategy: Any = None) -> None:
        self.st, self.hp, self.splits, self.pre, self.run, self.strategy = st, st.hparams, splits, pre, run, strategy
        self.done = int(state["epoch"])
        self.history: list[dict[str, Any]] = list(state["history"])
        self.saved_checkpoint: str | None = state["checkpoint"]
        self.callbacks, self.verbose = callbacks, verbose
        self.model: Any = None
        self.float_model: Any = None  # the model QAT started from
        self.replicas = strategy.num_replicas_in_sync if strategy else 1

    # -- checkpoints ---------------------------------------------------------------------------------
    def checkpoint(self, epoch: int) -> None:
        """Write the model + optimizer state as ``ckpt-<epoch>``, then commit it in state.json, then prune old ones."""
        import tensorflow as tf

        prefix = str(self.run / CHECKPOINTS / f"ckpt-{epoch}")
        tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).write(prefix)
        state = {"epoch": epoch, "history": self.history, "checkpoint": Path(prefix).name}
        atomic_write_text(self.run / STATE_FILE, json.dumps(state))
        for old in (self.run / CHECKPOINTS).glob("ckpt-*"):
            if not old.name.startswith(f"ckpt-{epoch}."):
                old.unlink()
        self.done, self.saved_checkpoint = epoch, Path(prefix).name

    def restore(self) -> None:
        import tensorflow as tf

        prefix = str(self.run / CHECKPOINTS / self.saved_checkpoint)
        tf.train.Checkpoint(model=self.model, optimizer=self.model.optimizer).read(prefix).expect_partial()

    # -- model per phase -----------------------------------------------------------------------------
    def _build(self) -> Any:
        import tf_keras as keras

        m = self.st.model
        weights = None if self.done else m.weights  # a resumed run's weights come from its checkpoint
        model = build(m.arch, self.splits.train.num_classes, self.pre.input_size, weights, m.dropout, **m.build_options)
        if not m.pretrained:  # Keras' 0.999 would leave inference statistics unsettled for thousands of steps
            for layer in model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.momentum = FROM_SCRATCH_BN_MOMENTUM
        return model

    def _enter(self, phase: str, start: int, end: int, steps: int) -> None:
        """Turn the model into the phase's form: trainable units, pruning wrappers or QAT wrappers."""
        from edgeclf.training import optimize

        hp, pretrained = self.hp, self.st.model.pretrained
        if phase == "head":
            set_trainable(self.model, top_blocks=0)
        elif phase == "finetune":
            set_trainable(self.model, top_fraction=hp.fine_tune_fraction if pretrained else 1.0,
                          train_bn=not pretrained)
        elif phase == "prune":
            set_trainable(self.model, top_fraction=1.0, train_bn=not pretrained)
            self.model = optimize.prune(self.model, hp.prune, steps * (end - start), hp.prune_block)
        elif phase == "cluster":
            set_trainable(self.model, top_fraction=1.0, train_bn=not pretrained)
            self.model = optimize.cluster(self.model, hp.cluster, preserve_sparsity=hp.prune > 0)
        else:  # qat, after fine-tuning, pruning or clustering (each stripped)
            if hp.cluster and not hp.cluster_epochs:  # k-means centroids as they start: cluster-preserving QAT trains them
                self.model = optimize.strip_clustering(optimize.cluster(self.model, hp.cluster, hp.prune > 0))
            if self.done <= start:  # the float model is trained (not a mid-QAT resume): keep it for float files
                from edgeclf.training.keras_io import FLOAT_MODEL_FILE, save_model
                save_model(self.model, self.run / FLOAT_MODEL_FILE)
            set_trainable(self.model, top_fraction=1.0, train_bn=not pretrained)
            self.float_model = self.model
            self.model = optimize.quantize(self.model, preserve_sparsity=hp.prune > 0, preserve_clusters=hp.cluster > 0)
            optimize.init_activation_ranges(self.model, self._range_batches())
        import tf_keras as keras
        lr = hp.lr if phase == "head" else self.st.second_lr
        self.model.compile(optimizer=keras.optimizers.Adam(lr),
                           loss=keras.losses.CategoricalCrossentropy(label_smoothing=hp.label_smoothing),
                           metrics=["accuracy"])

    def _range_batches(self) -> Any:
        """A few un-augmented training batches to start QAT activation ranges from (a resume restores them)."""
        from edgeclf.data.pipeline import make_pipeline

        return make_pipeline(self.splits.train, self.pre, self.hp.batch_size, cache=False).take(RANGE_BATCHES)

    def _leave(self, phase: str) -> None:
        from edgeclf.training import optimize

        if phase == "prune":
            self.model = optimize.strip_pruning(self.model)
        elif phase == "cluster":
            self.model = optimize.strip_clustering(self.model)

    # -- the loop --------------------------------------------------------------------------------------
    def fit(self) -> tuple[Any, list[dict[str, Any]]]:
        import tf_keras as keras
        from edgeclf.data.pipeline import make_pipeline

        hp = self.hp
        keras.utils.set_random_seed(hp.seed)
        train_data = make_pipeline(self.splits.train, self.pre, hp.batch_size, training=True, augment=hp.augment,
                                   seed=hp.seed)
        val_data = make_pipeline(self.splits.val, self.pre, hp.batch_size)
        steps = -(-len(self.splits.train) // hp.batch_size)
        weights = (class_weights(self.splits.train.labels, self.splits.train.num_classes)
                   if hp.class_weights == "auto" else None)
        strategy = self.strategy
        if self.verbose and strategy:
            log.info(f"{self.st.strategy}: {self.replicas} replica(s) in sync")
        phases = hp.phases()
        last_done = next((i for i, (_, s, e) in enumerate(phases) if s < self.done <= e), None)
        with strategy.scope() if strategy else contextlib.nullcontext():
            self.model = self._build()
            for i, (phase, start, end) in enumerate(phases):
                self._enter(phase, start, end, steps)
                if i == last_done:
                    self.restore()
                if self.done < end:
                    if self.verbose:
                        log.info(f"phase {phase}: epochs {max(start, self.done) + 1}-{end} of {phases[-1][2]}")
                    cbs = [_checkpoint_callback(self, phase)]
                    if phase == "prune":
                        from edgeclf.training.optimize import pruning_callbacks
                        cbs += pruning_callbacks()
                    if hp.early_stopping and phase in ("head", "finetune"):
                        cbs.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=hp.early_stopping,
                                                                 restore_best_weights=True))
                    self.model.fit(train_data, validation_data=val_data, epochs=end, initial_epoch=max(start, self.done),
                                   class_weight=weights, callbacks=cbs + self.callbacks, verbose=self.verbose)
                    if self.done < end:  # early stopping ended the phase: mark it complete
                        self.checkpoint(end)
                self._leave(phase)
            if hp.cluster:  # what is saved and converted: a CQAT model cannot be rebuilt from its config
                from edgeclf.training.optimize import loadable_twin
                self.model = loadable_twin(self.model, self.float_model)
        return self.model, self.history


def predict_probabilities(model: Any, ds: Dataset, pre: Preprocess, batch_size: int = 64) -> np.ndarray:
    """Softmax outputs of a Keras model over ``ds``, through the same pipeline as training (no augmentation)."""
    from edgeclf.data.pipeline import make_pipeline

    return np.asarray(model.predict(make_pipeline(ds, pre, batch_size, cache=False), verbose=0))


def _write_npz(target: Path, images: np.ndarray, labels: np.ndarray) -> None:
    with atomic_path(target) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, images=images, labels=labels)


def _history_csv(history: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["epoch", "phase", *HISTORY_KEYS, "lr"], extrasaction="ignore")
    writer.writeheader()
    for row in history:
        writer.writerow({**row, "epoch": row["epoch"] + 1})
    return buf.getvalue()


def _write_run(run: Path, st: Settings, splits: Splits, pre: Preprocess, model: Any,
               history: list[dict[str, Any]], replicas: int) -> None:
    """Evaluate on the test split and write every file of the run folder (each atomically)."""
    hp = st.hparams
    from edgeclf import plots
    from edgeclf.training.keras_io import save_model
    from edgeclf.training.optimize import sparsity

    labels = splits.train.class_names
    test_report = classification_report(splits.test.labels, predict_probabilities(model, splits.test, pre), labels)
    val_report = classification_report(splits.val.labels, predict_probabilities(model, splits.val, pre), labels)
    reached = sparsity(model) if hp.prune else None
    metrics = {"test": test_report, "val": summary(val_report), "sparsity": reached,
               "target_sparsity": hp.prune or None, "qat": hp.quantize_aware, "clusters": hp.cluster or None,
               "epochs_run": len(history),
               "replicas": replicas, "split_sizes": {k: len(getattr(splits, k)) for k in ("train", "val", "test", "calib")}}
    meta = Metadata(labels=labels, preprocess=pre, output="probabilities", quantization="qat" if hp.quantize_aware else "fp32",
                    source=st.model.arch, extra={"metrics": summary(test_report), "val_metrics": summary(val_report),
                                           "sparsity": reached, "qat": hp.quantize_aware, "clusters": hp.cluster or None,
                                           "run": run.name})
    save_model(model, run / "model.keras")
    atomic_write_text(run / "metadata.json", meta.to_json())
    atomic_write_text(run / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(run / "history.csv", _history_csv(history))
    plots.training_curves(history, run / "plots" / "training_curves.png")
    plots.confusion(confusion_view(test_report), run / "plots" / "confusion_matrix.png",
                    title=f"{run.name}: test split")
    _write_npz(run / "calib.npz", splits.calib.prepared(pre), splits.calib.labels)
    _write_npz(run / "test.npz", splits.test.prepared(pre), splits.test.labels)
