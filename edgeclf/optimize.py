"""Model optimisation with tfmot: magnitude pruning to a target sparsity, quantisation-aware training, and
both together (pruning first, then sparsity-preserving QAT so the int8 file keeps the zeros)."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")


def prune(model: Any, target: float, steps: int) -> Any:
    """Wrap ``model`` for pruning: sparsity rises from 0 to ``target`` (polynomial decay) over ~3/4 of ``steps``."""
    import tensorflow_model_optimization as tfmot

    end = max(1, int(steps * 0.75))
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0,
                                                    end_step=end, frequency=max(1, end // 10))
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


def pruning_callbacks() -> list[Any]:
    """The step-update callback a pruned model needs during ``fit``."""
    import tensorflow_model_optimization as tfmot

    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip_pruning(model: Any) -> Any:
    """Remove the pruning wrappers, keeping the (now sparse) weights."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def quantize(model: Any, preserve_sparsity: bool = False) -> Any:
    """Quantisation-aware copy of ``model``; with ``preserve_sparsity`` tfmot's prune-preserving scheme keeps zeros.

    Layers tfmot's default 8-bit registry supports are annotated; any other layer (none in the models
    edgeclf builds) stays float, and the converter keeps it so.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_registry

    qk = tfmot.quantization.keras
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    def annotate(layer: Any) -> Any:  # the layer itself, as tfmot's quantize_annotate_model does: weights kept
        return qk.quantize_annotate_layer(layer) if registry.supports(layer) else layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme() if preserve_sparsity else None
    return qk.quantize_apply(annotated, scheme) if scheme else qk.quantize_apply(annotated)


def sparsity(model: Any, kinds: tuple[str, ...] = ("kernel",)) -> float:
    """Share of exactly-zero values in the weights named ``kinds`` (default: conv and dense kernels, what tfmot
    prunes; depthwise kernels are ``depthwise_kernel`` and tfmot leaves them dense)."""
    zeros = total = 0
    for w in model.weights:
        if w.name.split("/")[-1].split(":")[0] in kinds and len(w.shape) > 1:
            a = np.asarray(w.numpy())
            zeros += int((a == 0).sum())
            total += a.size
    return zeros / total if total else 0.0
