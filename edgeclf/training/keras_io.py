"""Saving and loading tf-keras models in one place, including tfmot's quantisation-aware models.

tfmot 0.8.1 cannot round-trip its QAT layers through the ``.keras`` format with tf-keras 2.21: a
``QuantizeLayer``/``QuantizeWrapper`` is built twice on load (``build_from_config``, then again in the
functional call, because its ``build`` never marks it built), and a ``QuantizeWrapperV2`` saves its inner
layer's kernel twice (once as its own, once through the inner layer). ``tfmot_keras_format`` fixes both for
the duration of a save or load: build once, and save/load only the wrapper's own variables.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from edgeclf.artifact.formats import KERAS_SUFFIXES
from edgeclf.errors import InvalidModelError, ModelNotFoundError, first_line
from edgeclf.fileio import atomic_path
from edgeclf.training.keras_config import check_model_file


MODEL_FILE = "model.keras"
FLOAT_MODEL_FILE = "model_float.keras"  # a QAT run's float model just before QAT (for fp32/fp16 files)


def _own_variables(wrapper: Any) -> list[Any]:
    """A wrapper's variables that its wrapped layer does not own (those the inner layer saves itself)."""
    inner = {id(w) for w in wrapper.layer.weights}
    out, seen = [], set()
    for v in wrapper._trainable_weights + wrapper._non_trainable_weights:
        if id(v) not in seen and id(v) not in inner:
            seen.add(id(v))
            out.append(v)
    return out


def _save_own_variables(self: Any, store: Any) -> None:
    for i, v in enumerate(_own_variables(self)):
        store[str(i)] = v.numpy()


def _load_own_variables(self: Any, store: Any) -> None:
    variables = _own_variables(self)
    if len(store.keys()) != len(variables):
        raise ValueError(f"layer {self.name!r} expects {len(variables)} variables, the file has {len(store.keys())}")
    for i, v in enumerate(variables):
        v.assign(store[str(i)])


@contextlib.contextmanager
def tfmot_keras_format() -> Iterator[None]:
    """Within this block tfmot QAT models save to and load from ``.keras`` consistently (see module doc)."""
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapper

    patched = [(QuantizeLayer, "build_from_config", lambda self, config: None),
               (QuantizeWrapper, "build_from_config", lambda self, config: None),
               (QuantizeWrapper, "save_own_variables", _save_own_variables),
               (QuantizeWrapper, "load_own_variables", _load_own_variables)]
    saved = [(cls, name, cls.__dict__.get(name)) for cls, name, _ in patched]
    for cls, name, fn in patched:
        setattr(cls, name, fn)
    try:
        with tfmot.quantization.keras.quantize_scope():
            yield
    finally:
        for cls, name, original in saved:
            if original is None:
                delattr(cls, name)
            else:
                setattr(cls, name, original)


def save_model(model: Any, target: str | os.PathLike) -> Path:
    """Save a (possibly QAT) tf-keras model to ``target`` (.keras or .h5) atomically."""
    target = Path(target)
    if target.suffix.lower() not in KERAS_SUFFIXES:
        raise InvalidModelError(f"{target}: a Keras model file must end in {', '.join(KERAS_SUFFIXES)}")
    with tfmot_keras_format(), atomic_path(target) as tmp:  # tmp has the target's name, whose suffix picks the format
        model.save(str(tmp))
    return target


def model_file(path: str | os.PathLike) -> Path:
    """The Keras model a path designates: a run folder's model.keras, a .keras/.h5 file or a SavedModel folder."""
    p = Path(path)
    if not p.exists():
        raise ModelNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / MODEL_FILE).is_file():
            return p / MODEL_FILE
        if (p / "saved_model.pb").is_file():
            return p
        raise InvalidModelError(f"{p}: folder is neither a training run ({MODEL_FILE}) nor a SavedModel (saved_model.pb)")
    if p.suffix.lower() not in KERAS_SUFFIXES:
        raise InvalidModelError(f"{p}: expected a run folder, .keras, .h5 or SavedModel folder, got {p.suffix or 'no suffix'}")
    return p


def load_model(path: str | os.PathLike, unsafe_load: bool = False) -> Any:
    """Load a run folder / .keras / .h5 (float, pruned or QAT) without compiling it, after vetting its config
    (``keras_config``). ``unsafe_load`` skips the vetting and also loads SavedModels, Lambda layers and custom
    objects, whose code runs: only for files you trust."""
    import tf_keras as keras

    f = model_file(path)
    if not unsafe_load:
        check_model_file(f)
    try:
        with tfmot_keras_format():
            return keras.models.load_model(str(f), compile=False, safe_mode=not unsafe_load)
    except Exception as exc:  # Keras raises many unrelated types for unreadable files
        raise InvalidModelError(f"{f}: cannot load as a Keras model ({type(exc).__name__}: {first_line(exc, 200)})") from None
