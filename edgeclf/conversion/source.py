"""The model a conversion starts from: a Keras classifier, its metadata and where its calibration data lives.

Accepts a training run folder, a ``.keras`` / ``.h5`` file or a SavedModel folder made anywhere; a model
made outside edgeclf gets its labels and preprocessing from the caller (``--labels/--mean/--std``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from edgeclf.artifact import Metadata, Preprocess, read_labels, read_metadata
from edgeclf.errors import InvalidModelError
from edgeclf.training.keras_io import FLOAT_MODEL_FILE, load_model, model_file


@dataclass
class Source:
    """A loaded Keras classifier plus everything the converters and the parity gate need to know."""

    path: Path
    model: Any                     # tf_keras.Model
    metadata: Metadata
    input_shape: tuple[int, int, int]   # H, W, C
    num_classes: int
    is_qat: bool
    calib_npz: Path | None          # the run's calib.npz, when MODEL is a run folder

    @property
    def stem(self) -> str:
        """Base name for the output files."""
        return self.path.name if self.path.is_dir() else self.path.stem


def _check_classifier(model: Any, path: Path, size: tuple[int, int] | None) -> tuple[tuple[int, int, int], int]:
    """Shape checks: one 4-D NHWC image input with 1 or 3 channels and one 2-D (batch, classes) output."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InvalidModelError(f"{path}: not an image classifier: it has {len(model.inputs)} inputs and "
                                f"{len(model.outputs)} outputs (expected 1 and 1)")
    ishape, oshape = tuple(model.inputs[0].shape), tuple(model.outputs[0].shape)
    if len(ishape) != 4 or ishape[-1] not in (1, 3):
        raise InvalidModelError(f"{path}: not an image classifier: input shape {ishape} is not (batch, height, width, 1|3)")
    if len(oshape) != 2 or not oshape[-1]:
        raise InvalidModelError(f"{path}: not an image classifier: output shape {oshape} is not (batch, classes)")
    h, w = ishape[1], ishape[2]
    if h is None or w is None:
        if size is None:
            raise InvalidModelError(f"{path}: input has no fixed height/width {ishape}; give the size in its metadata")
        h, w = size
    return (int(h), int(w), int(ishape[-1])), int(oshape[-1])


def _preprocess(meta: Metadata | None, shape: tuple[int, int, int], mean: Sequence[float] | None,
                std: Sequence[float] | None, color: str | None, resize: str | None) -> Preprocess:
    base = meta.preprocess if meta is not None else Preprocess(color="GRAY" if shape[2] == 1 else "RGB")
    changes: dict[str, Any] = {"input_size": shape[:2]}
    for key, value in (("mean", mean), ("std", std), ("color", color), ("resize", resize)):
        if value is not None:
            changes[key] = value
    try:
        return Preprocess(**{**base.__dict__, **changes})
    except ValueError as exc:
        raise InvalidModelError(f"bad preprocessing option: {exc}") from None


def load_source(model: str | os.PathLike, labels: str | os.PathLike | Sequence[str] | None = None,
                mean: Sequence[float] | float | None = None, std: Sequence[float] | float | None = None,
                color: str | None = None, resize: str | None = None, float_model: bool = False,
                unsafe_load: bool = False) -> Source:
    """Load MODEL and settle its metadata (run metadata first, then the caller's overrides).

    ``float_model``: from a QAT run folder, load the float model saved before QAT instead. ``unsafe_load``: see
    ``keras_io.load_model``.
    """
    path = Path(model)
    mfile = path / FLOAT_MODEL_FILE if float_model else model_file(path)
    meta = read_metadata(path) if path.is_dir() else None
    keras_model = load_model(mfile, unsafe_load)
    size = meta.preprocess.input_size if meta is not None else None
    shape, num_classes = _check_classifier(keras_model, path, size)
    if isinstance(labels, (str, os.PathLike)):
        labels = read_labels(labels)
    names = list(labels) if labels is not None else (meta.labels if meta is not None and meta.labels else
                                                     [str(i) for i in range(num_classes)])
    if len(names) != num_classes:
        raise InvalidModelError(f"{path}: model has {num_classes} classes but {len(names)} labels were given")
    pre = _preprocess(meta, shape, mean, std, color, resize)
    if meta is None:
        meta = Metadata(labels=names, preprocess=pre, output="auto", source=str(path))
    else:
        meta = meta.replace(labels=names, preprocess=pre, source=meta.source or str(path))
    is_qat = any(type(layer).__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")
                 for layer in keras_model.layers)
    if is_qat:  # channels pruned to all-zero get a representable range, for TFLite and ONNX (QDQ) alike
        from edgeclf.training.optimize import representable_weight_ranges
        representable_weight_ranges(keras_model)
    npz = path / "calib.npz" if path.is_dir() and (path / "calib.npz").is_file() else None
    return Source(path, keras_model, meta, shape, num_classes, is_qat, npz)


def has_float_model(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a QAT run folder that also kept its float model."""
    return (Path(path) / FLOAT_MODEL_FILE).is_file()
