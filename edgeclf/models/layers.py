"""What every architecture shares: the tf-keras import, the classifier head and loading a Keras weights file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgeclf.errors import ModelNotFoundError, first_line
from .errors import WeightsError


def keras() -> Any:
    """Import tf-keras (Keras 2; ``edgeclf/__init__`` sets ``TF_USE_LEGACY_KERAS=1`` so tfmot and tf2onnx agree)."""
    import tf_keras
    return tf_keras


def classifier(inputs: Any, features: Any, num_classes: int, dropout: float, name: str) -> Any:
    """Global average pooling, dropout and a softmax ``Dense`` on ``features``, as one flat ``Model``."""
    k = keras()
    x = k.layers.GlobalAveragePooling2D(name="avg_pool")(features)
    if dropout:
        x = k.layers.Dropout(dropout, name="dropout")(x)
    # near-zero start: every class equally likely, so a fresh head on pretrained features starts at loss
    # ln(K). (The reference fan-out scaling gives variance 1/(3K): fine for 1000 classes, but for 10 it puts
    # logits in the tens on ReLU6 features and the first epochs are spent undoing it.)
    init = k.initializers.RandomNormal(stddev=0.01)
    out = k.layers.Dense(num_classes, activation="softmax", kernel_initializer=init, name="predictions")(x)
    return k.Model(inputs, out, name=name)


def load_keras_weights(model: Any, path: str | os.PathLike) -> None:
    """Load a Keras weights file (``.weights.h5``, ``.h5`` or a TF checkpoint) into ``model``, or say why not."""
    p = Path(path)
    if not (p.is_file() or Path(f"{p}.index").is_file()):
        raise ModelNotFoundError(f"{p}: weights file not found")
    try:
        model.load_weights(str(p))
    except Exception as exc:  # h5py / TF raise many types for a corrupt or mismatched file
        raise WeightsError(f"{p}: cannot load these weights into {model.name} "
                           f"({type(exc).__name__}: {first_line(exc, 200)})") from None
