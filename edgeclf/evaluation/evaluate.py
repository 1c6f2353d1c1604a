"""``evaluate``: score a model (run folder / Keras file, or .tflite/.onnx through ``Runtime``) on a data set."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgeclf.artifact import Preprocess, read_metadata
from edgeclf.artifact.formats import is_model_file
from edgeclf.data import BUILTIN, Dataset, class_map, load_dataset
from edgeclf.errors import DataError, InvalidModelError
from edgeclf.fileio import atomic_write_text
from edgeclf.metrics import classification_report, confusion_view
from edgeclf.plots import confusion

def load_eval_data(data: str | os.PathLike, limit: int | None = None, seed: int = 0) -> tuple[Dataset, bool]:
    """A data set to score and whether its images are already prepared at the model's input size (an .npz
    written by training: ``test.npz``/``calib.npz``). Built-in sets give their official test half."""
    p = Path(data)
    if p.suffix.lower() == ".npz" and p.is_file():
        try:
            with np.load(p) as z:
                images, labels = z["images"], z["labels"]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"{p}: not a run's images/labels .npz ({type(exc).__name__}: {exc})") from None
        names = [str(i) for i in range(int(labels.max()) + 1)] if len(labels) else []
        return Dataset(names, labels, images=images, source=str(p)), True
    ds = load_dataset(data, part="test" if str(data) in BUILTIN and str(data) != "digits" else None, limit=limit,
                      seed=seed)
    return ds, False


def _keras_scores(model_path: Path, ds: Dataset, prepared: bool, pre: Preprocess | None,
                  unsafe_load: bool) -> tuple[np.ndarray, list[str]]:
    from edgeclf.training.keras_io import load_model, model_file
    from edgeclf.training.trainer import predict_probabilities

    meta = read_metadata(model_path) if model_path.is_dir() else None
    if meta is None and (model_file(model_path).parent / "metadata.json").is_file():
        meta = read_metadata(model_file(model_path).parent)
    if pre is None:
        if meta is None:
            raise InvalidModelError(f"{model_path}: no metadata.json beside the Keras model; give --mean and --std "
                                    "(and --color/--resize) so images can be normalised as in training")
        pre = meta.preprocess
    model = load_model(model_path, unsafe_load)
    h, w = (int(v) for v in model.inputs[0].shape[1:3])
    pre = dataclasses.replace(pre, input_size=(h, w), resize="stretch" if prepared else pre.resize)
    return predict_probabilities(model, ds, pre), list(meta.labels) if meta else []


def _runtime_scores(model_path: Path, ds: Dataset, prepared: bool, runtime_kw: dict[str, Any]) -> tuple[np.ndarray, list[str]]:
    from rich.progress import track

    from edgeclf.runtime import Runtime

    if prepared:  # already at the input size: no second crop
        runtime_kw = {**runtime_kw, "resize": "stretch"}
    rt = Runtime(model_path, **runtime_kw)
    scores = [rt.probabilities(ds.image_bgr(i)) for i in track(range(len(ds)), description="evaluating",
                                                                 transient=True)]
    return np.stack(scores), list(rt.labels or [])


def evaluate(model: str | os.PathLike, data: str | os.PathLike, limit: int | None = None,
             out: str | os.PathLike | None = None, unsafe_load: bool = False, **runtime_kw: Any) -> dict[str, Any]:
    """Metrics of ``model`` on ``data``; with ``out`` also report.json, confusion_matrix.json and .png there
    (sizes follow the classes in the data; the plot is skipped with one log line without matplotlib).

    ``runtime_kw`` (labels, mean, std, color, resize, device, num_threads) describe a model made elsewhere;
    for a Keras model only mean/std/color/resize are used, when it has no metadata.json. ``unsafe_load``: see
    ``keras_io.load_model``.
    """
    path = Path(model)
    ds, prepared = load_eval_data(data, limit)
    if is_model_file(path):
        scores, model_labels = _runtime_scores(path, ds, prepared, runtime_kw)
    else:
        pre = None
        if runtime_kw.get("mean") is not None and runtime_kw.get("std") is not None:
            pre = Preprocess(mean=runtime_kw["mean"], std=runtime_kw["std"], color=runtime_kw.get("color") or "RGB",
                             resize=runtime_kw.get("resize") or "crop")
        scores, model_labels = _keras_scores(path, ds, prepared, pre, unsafe_load)
    by_position = prepared or (str(data) in BUILTIN and len(ds.class_names) == len(model_labels))
    mapping = class_map(ds.class_names, model_labels, ds.source, by_position)
    names = model_labels or ds.class_names
    report = classification_report(mapping[ds.labels], scores, names)
    report.update(model=str(path), data=str(data))
    if out is not None:
        out = Path(out)
        view = confusion_view(report)
        atomic_write_text(out / "report.json", json.dumps(report, indent=2))
        atomic_write_text(out / "confusion_matrix.json", json.dumps(view, indent=2))
        confusion(view, out / "confusion_matrix.png", title=f"{path.name} on {data}")
    return report
