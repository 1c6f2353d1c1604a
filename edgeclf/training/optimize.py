"""Model optimisation with tfmot: magnitude pruning to a target sparsity, weight clustering, and
quantisation-aware training, in that order; each later step preserves what the earlier ones made (sparsity-
preserving clustering, then cluster- / sparsity-and-cluster-preserving QAT), so the int8 file keeps the zeros
and the few distinct values per kernel that entropy coders shrink."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterable, Iterator

import numpy as np


def prune(model: Any, target: float, steps: int, block: int = 1) -> Any:
    """Wrap ``model`` for pruning: sparsity rises from 0 to ``target`` (polynomial decay) over ~3/4 of ``steps``.

    ``block`` > 1 prunes the kernels of 1x1 convolutions and dense layers in runs of ``block`` consecutive input
    channels (by their mean magnitude) instead of weight by weight. One output channel's weights are contiguous
    in the .tflite file (OHWI), so the zeros lie in runs that gzip codes as one match each: element-wise zeros
    still cost about a bit apiece. Other kernels (the 3x3 stem) are pruned element-wise, as tfmot does.
    """
    import tensorflow_model_optimization as tfmot

    end = max(1, int(steps * 0.75))
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=target, begin_step=0,
                                                    end_step=end, frequency=max(1, end // 10))
    if block > 1:  # tfmot keeps layers that arrive already wrapped
        import tf_keras as keras
        wrapper = _channel_block_wrapper()
        model = keras.models.clone_model(
            model, clone_function=lambda layer: (wrapper(layer, block, pruning_schedule=schedule)
                                                 if _pointwise(layer) else layer))
    return tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)


def _pointwise(layer: Any) -> bool:
    """A dense layer, or a 1x1 convolution (not depthwise): a kernel that squeezes to (inputs, outputs)."""
    import tf_keras as keras

    if isinstance(layer, keras.layers.Dense):
        return True
    return (type(layer) is keras.layers.Conv2D and tuple(layer.kernel_size) == (1, 1)
            and layer.kernel.shape[2] > 1 and layer.kernel.shape[3] > 1)


def _channel_block_wrapper() -> Any:
    """tfmot's pruning wrapper, masking runs of ``block`` input channels of an (inputs, outputs) kernel at once.

    tfmot's own ``block_size`` refuses any kernel that is not 2-D, which rules out 1x1 convolutions, and breaks
    when a layer has a single run per output channel; this ranks the runs by mean magnitude with tfmot's
    threshold rule (``_update_mask``) and expands the run mask back to the kernel.
    """
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_impl, pruning_wrapper

    class ChannelBlockPruning(pruning_impl.Pruning):
        def __init__(self, block: int, **kwargs: Any) -> None:
            super().__init__(block_size=(1, 1), block_pooling_type="AVG", **kwargs)
            self.channel_block = block

        def _maybe_update_block_mask(self, weights: Any) -> Any:
            b = self.channel_block
            kernel = tf.reshape(tf.abs(weights), [-1, weights.shape[-1]])           # (inputs, outputs)
            inputs, outputs = kernel.shape
            runs = -(-inputs // b)
            padded = tf.pad(kernel, [[0, runs * b - inputs], [0, 0]])
            sizes = np.full((runs, 1), b, np.float32)
            sizes[-1] = inputs - (runs - 1) * b                                       # a last, shorter run
            means = tf.reduce_sum(tf.reshape(padded, [runs, b, outputs]), axis=1) / sizes
            threshold, run_mask = self._update_mask(means)
            mask = tf.repeat(run_mask, b, axis=0)[:inputs]
            return threshold, tf.reshape(mask, tf.shape(weights))

    class PruneChannelBlocks(pruning_wrapper.PruneLowMagnitude):
        def __init__(self, layer: Any, block: int, **kwargs: Any) -> None:
            super().__init__(layer, **kwargs)
            self.channel_block = block

        def build(self, input_shape: Any) -> None:
            super().build(input_shape)  # element-wise pruning object; replaced by the run-wise one
            self.pruning_obj = ChannelBlockPruning(
                self.channel_block, training_step_fn=lambda: self.pruning_step, pruning_vars=self.pruning_vars,
                pruning_schedule=self.pruning_schedule)

    return PruneChannelBlocks


def pruning_callbacks() -> list[Any]:
    """The step-update callback a pruned model needs during ``fit``."""
    import tensorflow_model_optimization as tfmot

    return [tfmot.sparsity.keras.UpdatePruningStep()]


def strip_pruning(model: Any) -> Any:
    """Remove the pruning wrappers, keeping the (now sparse) weights."""
    import tensorflow_model_optimization as tfmot

    return tfmot.sparsity.keras.strip_pruning(model)


def cluster(model: Any, clusters: int, preserve_sparsity: bool = False) -> Any:
    """Wrap ``model`` for clustering: every conv and dense kernel shares ``clusters`` centroids (k-means++ start).

    With ``preserve_sparsity`` (after pruning) zero stays a centroid of its own and pruned weights stay zero.
    Depthwise kernels stay unclustered, as in tfmot's registry: few weights per channel, large accuracy loss.
    """
    import tensorflow_model_optimization as tfmot

    ck = tfmot.clustering.keras
    return ck.cluster_weights(model, number_of_clusters=clusters, preserve_sparsity=preserve_sparsity,
                              cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS)


def strip_clustering(model: Any) -> Any:
    """Remove the clustering wrappers, keeping the clustered weights (``clusters`` distinct values per kernel)."""
    import tensorflow_model_optimization as tfmot

    return tfmot.clustering.keras.strip_clustering(model)


@contextlib.contextmanager
def per_kernel_centroids() -> Iterator[None]:
    """Within this block tfmot's cluster-preserving QAT takes a clustered conv kernel's centroids per kernel, as
    ``cluster`` made them. tfmot guesses per-channel clustering whenever every output channel holds nearly the same
    number of distinct values, which any well-clustered kernel does, and then builds one gather per channel:
    thousands of graph ops (a ten-minute trace for MobileNetV2-0.35) and centroids that drift apart per channel."""
    import tensorflow as tf
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as registry)

    def per_kernel(layer: Any, weight: Any, data_format: Any) -> tuple[Any, Any, Any, bool]:
        centroids, index = registry.get_unique(weight)
        return centroids, tf.size(centroids), index, False

    original = registry.get_centroids
    registry.get_centroids = per_kernel
    try:
        yield
    finally:
        registry.get_centroids = original


class _UnusedKernels(logging.Filter):
    """Drops Keras's "Gradients do not exist for variables" warning when every variable it names is a kernel: in
    cluster-preserving QAT each kernel is rebuilt from its trained centroids, so the kernel variables themselves
    get no gradient by design (and no optimiser slots: Keras filters them out before applying)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Gradients do not exist for variables") or not record.args:
            return True
        names = record.args[0] if isinstance(record.args, tuple) else record.args
        return not (isinstance(names, list) and names and all(str(n).endswith("kernel:0") for n in names))


def _quiet_unused_kernels() -> None:
    """Install the filter on TensorFlow's logger once."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _UnusedKernels) for f in logger.filters):
        logger.addFilter(_UnusedKernels())


def _foldable_batch_norms(model: Any) -> set[str]:
    """Names of the batch norms fed directly by a convolution or dense layer: tfmot's layout transforms fold
    such pairs. Read from the model's own graph config: a layer reused from an earlier model (as after
    ``strip_pruning``) has inbound nodes in both."""
    import tf_keras as keras

    layers = {layer.name: layer for layer in model.layers}
    folding = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    names = set()
    for cfg in model.get_config()["layers"]:
        nodes = cfg["inbound_nodes"]
        if (isinstance(layers[cfg["name"]], keras.layers.BatchNormalization) and len(nodes) == 1
                and len(nodes[0]) == 1 and isinstance(layers[nodes[0][0][0]], folding)):
            names.add(cfg["name"])
    return names


def quantize(model: Any, preserve_sparsity: bool = False, preserve_clusters: bool = False) -> Any:
    """Quantisation-aware copy of ``model`` in tfmot's collaborative scheme for what earlier steps made:
    ``preserve_sparsity`` keeps zeros (PQAT), ``preserve_clusters`` keeps each kernel's centroids and trains them
    (CQAT), both together is PCQAT.

    Layers tfmot's default 8-bit registry supports are annotated, and so is every batch norm that follows a
    convolution: tfmot only folds Conv+BN(+ReLU) when the batch norm is annotated too; left out, the
    convolution's output is fake-quantised before the batch norm, which the converter then cannot fold and
    keeps as float MUL/ADD with float kernels and DEQUANTIZE ops (a bigger, slower file). Any other layer
    (none in the models edgeclf builds) stays float, and the converter keeps it so.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import default_8bit_quantize_registry

    qk = tfmot.quantization.keras
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()

    folded = _foldable_batch_norms(model)

    def annotate(layer: Any) -> Any:  # the layer itself, as tfmot's quantize_annotate_model does: weights kept
        return qk.quantize_annotate_layer(layer) if registry.supports(layer) or layer.name in folded else layer

    annotated = keras.models.clone_model(model, clone_function=annotate)
    combine = tfmot.experimental.combine
    if preserve_clusters:
        _quiet_unused_kernels()
        with per_kernel_centroids():
            return qk.quantize_apply(annotated, combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity))
    if preserve_sparsity:
        return qk.quantize_apply(annotated, combine.Default8BitPrunePreserveQuantizeScheme())
    return qk.quantize_apply(annotated)


def _own_name(weight: Any, layer: Any) -> str:
    """A weight's name within its layer: 'quant_conv/kernel_min:0' -> 'kernel_min', 'quantize_layer_1_min' -> '_min'."""
    return weight.name.split(":")[0].split("/")[-1].replace(layer.name, "", 1)


def loadable_twin(qat_model: Any, float_model: Any) -> Any:
    """A default-scheme QAT copy of a cluster-preserving QAT model: the same (clustered) kernels, ranges and outputs.

    tfmot builds a CQAT layer from its kernel's current values (their distinct values become its centroids), so
    a saved CQAT model cannot be rebuilt from its config: on load the kernels are still random. Inference reads
    only the kernels, which CQAT keeps clustered, and the ranges; this twin loads and converts to the same file.
    """
    twin = quantize(float_model)
    for mine, theirs in zip(twin.layers, qat_model.layers):
        source = {_own_name(w, theirs): w for w in theirs.weights}
        for w in mine.weights:
            w.assign(source[_own_name(w, mine)])
    return twin


def _activation_ranges(model: Any) -> list[Any]:
    """The min/max variables of every moving-average (activation) quantizer of a tfmot QAT model."""
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_layer import QuantizeLayer
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapper
    from tensorflow_model_optimization.python.core.quantization.keras.quantizers import MovingAverageQuantizer

    pairs: list[tuple[Any, Any]] = []
    for layer in model.layers:
        if isinstance(layer, QuantizeLayer):
            pairs.append((layer.quantizer, getattr(layer, "quantizer_vars", None)))
        elif isinstance(layer, QuantizeWrapper):
            pairs += [(q, layer._output_quantizer_vars) for q in layer._output_quantizers[:1]]
            pairs += [(act.quantizer, getattr(act, name, None)) for act in layer._quantize_activations
                      for name in ("_pre_activation_vars", "_post_activation_vars")]
    return [v for q, found in pairs if isinstance(q, MovingAverageQuantizer) and found
            for v in (found["min_var"], found["max_var"])]


@contextlib.contextmanager
def _ranges_follow_each_batch() -> Iterator[None]:
    """Within this block a training-mode call sets activation ranges to that batch's min/max (EMA decay 0)."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    original = quant_ops.MovingAvgQuantize

    def follow_batch(*args: Any, **kwargs: Any) -> Any:  # quantizers call it by module name, passing 0.999
        return original(*args, **{**kwargs, "ema_decay": 0.0})

    quant_ops.MovingAvgQuantize = follow_batch
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize = original


def init_activation_ranges(model: Any, batches: Iterable[Any]) -> int:
    """Start a fresh QAT model's activation ranges at the mean batch min/max over ``batches``; returns the count.

    tfmot starts every activation range at [-6, 6] and moves it by 0.1 % per training step, so a QAT phase
    of a few hundred steps (a few epochs of a small data set) trains and ends with ranges still near
    [-6, 6]: wide activations (EfficientNet-Lite0's linear projections reach +-40) are clipped and narrow
    ones quantised far too coarsely. The batches run in training mode, as QAT will.
    """
    variables = _activation_ranges(model)
    sums = [np.zeros(v.shape, np.float64) for v in variables]
    count = 0
    with _ranges_follow_each_batch():
        for batch in batches:
            model(batch[0] if isinstance(batch, tuple) else batch, training=True)
            for total, v in zip(sums, variables):
                total += v.numpy()
            count += 1
    if count:
        for total, v in zip(sums, variables):
            v.assign((total / count).astype(np.float32))
    return count


def representable_weight_ranges(model: Any) -> int:
    """Give every all-zero weight channel of a QAT model a nonzero range, so int8 converters can quantise it.

    Pruning can zero all of an output channel's weights, and tfmot then learns that channel's range as
    [0, 0]. Keras is unaffected (fake-quantised zeros stay zero), but the TFLite converter turns the empty
    range into a ~1e-9 weight scale and quantises the bias folded in from the following batch norm with
    input scale x weight scale: it saturates int32 and the channel's output is wrong. Any range holding 0
    keeps the zeros exact, so the Keras outputs do not change; the layer's widest range keeps the bias step as
    fine as in its other channels. Returns the number of channels widened.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.quantize_wrapper import QuantizeWrapper

    widened = 0
    for layer in [m for m in model.submodules if isinstance(m, QuantizeWrapper)]:
        for _, _, found in layer._weight_vars:
            if "min_var" not in found:
                continue
            low, high = found["min_var"].numpy(), found["max_var"].numpy()
            empty = np.maximum(-low, high) <= 0
            if empty.any():
                span = float(np.max(np.maximum(-low, high))) or 1.0
                found["min_var"].assign(np.where(empty, -span, low).astype(np.float32))
                found["max_var"].assign(np.where(empty, span, high).astype(np.float32))
                widened += int(empty.sum())
    return widened


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
