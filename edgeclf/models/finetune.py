"""Two-stage fine-tuning support: group a built model's backbone into blocks and unfreeze only the top ones.

Blocks are recognised by layer name, for both naming schemes ``build`` produces: EfficientNet-Lite's
``stem_* / block<i>_* / head_*`` and Keras MobileNetV2's ``Conv1 / expanded_conv_* / block_<i>_* / Conv_1``.
The classifier head (pooling, dropout, ``predictions``) is not part of the backbone and stays trainable.
"""
from __future__ import annotations

import re
from typing import Any

from .errors import ModelConfigError
from .layers import keras

# Keras MobileNetV2 layers outside its numbered blocks
_MOBILENET_UNITS = {"Conv1": "stem", "bn_Conv1": "stem", "Conv1_relu": "stem",
                    "Conv_1": "head", "Conv_1_bn": "head", "out_relu": "head"}
_UNIT_PATTERN = re.compile(r"(stem|head|block_?\d+|expanded_conv)(?:_|$)")


def _unit_of(layer_name: str) -> str | None:
    if layer_name in _MOBILENET_UNITS:
        return _MOBILENET_UNITS[layer_name]
    m = _UNIT_PATTERN.match(layer_name)
    return m.group(1) if m else None


def backbone_units(model: Any) -> list[tuple[str, list[Any]]]:
    """The backbone as ``(unit name, layers)`` in input-to-output order: stem, each block, head conv."""
    units: dict[str, list[Any]] = {}
    for layer in model.layers:
        unit = _unit_of(layer.name)
        if unit is not None:
            units.setdefault(unit, []).append(layer)
    return list(units.items())


def set_trainable(model: Any, top_blocks: int | None = None, top_fraction: float | None = None,
                  train_bn: bool = False) -> list[str]:
    """Freeze the backbone except its top ``top_blocks`` units (or ``top_fraction`` of them); head stays trainable.

    ``top_blocks=0`` trains the classifier only (stage one). Batch-norm layers stay frozen (inference
    statistics) unless ``train_bn``, the usual choice when fine-tuning on a small data set. Returns the
    names of the unfrozen units.
    """
    if (top_blocks is None) == (top_fraction is None):
        raise ModelConfigError("give exactly one of top_blocks and top_fraction")
    units = backbone_units(model)
    if not units:
        raise ModelConfigError(f"{model.name}: no backbone blocks recognised by layer name; "
                               "was it built by edgeclf.models.build?")
    if top_fraction is not None:
        if not 0.0 <= top_fraction <= 1.0:
            raise ModelConfigError(f"top_fraction must be in [0, 1], got {top_fraction}")
        top_blocks = round(top_fraction * len(units))
    if top_blocks < 0:
        raise ModelConfigError(f"top_blocks must be >= 0, got {top_blocks}")
    batch_norm = keras().layers.BatchNormalization
    model.trainable = True
    open_units = {name for name, _ in units[len(units) - top_blocks:]} if top_blocks else set()
    for name, layers in units:
        for layer in layers:
            layer.trainable = name in open_units and (train_bn or not isinstance(layer, batch_norm))
    return [name for name, _ in units if name in open_units]
