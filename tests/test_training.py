"""Training end to end on tiny configurations: resume after an interruption, pruning + QAT into a run folder
that converts and runs, and the eval report."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edgeclf.data import load_digits
from edgeclf.errors import EdgeclfError

TINY = dict(arch="mobilenet_v2", alpha=0.35, img_size=32, weights=None, batch_size=32, verbose=0)


def digits(n_per_class: int = 16):
    ds = load_digits()
    idx = np.concatenate([np.flatnonzero(ds.labels == c)[:n_per_class] for c in range(10)])
    return ds.subset(np.sort(idx))


class Interrupt:
    """A Keras callback that stops training like Ctrl-C after ``after`` epochs."""

    def __new__(cls, after: int):
        import tf_keras as keras

        class _Interrupt(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if epoch + 1 == after:
                    raise KeyboardInterrupt

        return _Interrupt()


def test_resume_continues_after_interruption(tmp_path):
    from edgeclf.training.trainer import train

    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(digits(), out=run, epochs=3, freeze_epochs=1, callbacks=[Interrupt(after=1)], **TINY)
    state = json.loads((run / "state.json").read_text())
    assert state["epoch"] == 1 and [r["epoch"] for r in state["history"]] == [0]
    assert not (run / "model.keras").exists()
    with pytest.raises(EdgeclfError, match="already holds a run"):
        train(digits(), out=run, epochs=3, **TINY)
    train(digits(), out=run, resume=True, verbose=0)
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[:2] for line in history[1:]] == [["1", "head"], ["2", "finetune"], ["3", "finetune"]]
    assert (run / "model.keras").is_file() and not (run / "checkpoints").exists() and not (run / "state.json").exists()


CLUSTERS = 8


@pytest.fixture(scope="module")
def pruned_qat_run(tmp_path_factory):
    """Every optimisation phase in one tiny run: prune, sparsity-preserving clustering, then PCQAT."""
    from edgeclf.training.trainer import train

    return train(digits(), out=tmp_path_factory.mktemp("runs") / "pq", epochs=1, freeze_epochs=0, prune=0.5,
                 prune_epochs=1, cluster=CLUSTERS, cluster_epochs=1, qat=True, qat_epochs=1, **TINY)


def test_prune_and_qat_write_a_complete_run_folder(pruned_qat_run):
    from edgeclf.artifact import read_metadata
    from edgeclf.training.keras_io import load_model
    from edgeclf.training.optimize import sparsity

    run = pruned_qat_run
    for name in ("model.keras", "metadata.json", "hparams.json", "metrics.json", "history.csv", "calib.npz",
                 "test.npz", "plots/training_curves.png", "plots/confusion_matrix.png"):
        assert (run / name).is_file(), name
    meta = read_metadata(run)
    assert meta.labels == [str(i) for i in range(10)] and meta.output == "probabilities"
    assert meta.preprocess.input_size == (32, 32) and meta.preprocess.mean == (127.5,) and meta.quantization == "qat"
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(metrics["sparsity"] - 0.5) < 0.02 and metrics["epochs_run"] == 4 and metrics["clusters"] == CLUSTERS
    history = (run / "history.csv").read_text().splitlines()[1:]
    assert [line.split(",")[1] for line in history] == ["finetune", "prune", "cluster", "qat"]
    model = load_model(run)
    assert any("quant" in layer.name for layer in model.layers)
    assert abs(sparsity(model) - metrics["sparsity"]) < 1e-6
    with np.load(run / "test.npz") as z:
        assert z["images"].shape[1:] == (32, 32, 3) and z["images"].dtype == np.uint8
        assert len(z["images"]) == len(z["labels"]) == metrics["split_sizes"]["test"]
    with np.load(run / "calib.npz") as z:
        assert len(z["labels"]) == metrics["split_sizes"]["calib"] > 0


def _pruned_kernels(block: int) -> list[tuple[str, np.ndarray]]:
    """MobileNetV2-0.35 at 32 px pruned to 50 % over a few steps on noise; its stripped (name, kernel) pairs."""
    import tf_keras as keras
    from edgeclf.training import optimize
    from edgeclf.models import build

    keras.utils.set_random_seed(0)
    model = optimize.prune(build("mobilenet_v2", 10, (32, 32), None, alpha=0.35), 0.5, steps=4, block=block)
    model.compile("adam", "sparse_categorical_crossentropy")
    x, y = np.random.default_rng(0).random((64, 32, 32, 3), np.float32), np.arange(64) % 10
    model.fit(x, y, batch_size=16, epochs=1, callbacks=optimize.pruning_callbacks(), verbose=0)
    stripped = optimize.strip_pruning(model)
    return [(w.name, w.numpy()) for w in stripped.weights if w.name.split("/")[-1].startswith("kernel")]


def _int8_gzip(kernels: list[tuple[str, np.ndarray]]) -> int:
    """gzip size of the kernels as a .tflite stores them: per-output-channel int8, output channel first."""
    import gzip
    parts = []
    for _, k in kernels:
        ohwi = np.moveaxis(k.reshape(-1, k.shape[-1]) if k.ndim == 2 else k, -1, 0)
        scale = np.abs(ohwi).reshape(len(ohwi), -1).max(axis=1) / 127 + 1e-12
        parts.append(np.round(ohwi / scale.reshape(-1, *[1] * (ohwi.ndim - 1))).astype(np.int8).tobytes())
    return len(gzip.compress(b"".join(parts)))


def test_channel_block_pruning_zeros_whole_runs_and_gzips_smaller():
    runs = _pruned_kernels(8)
    rng = np.random.default_rng(0)  # the same kernels with each one's zeros scattered: weight-by-weight sparsity
    single = [(name, rng.permutation(k.ravel()).reshape(k.shape)) for name, k in runs]
    pointwise = 0
    for name, k in runs:
        zero = k == 0
        if k.ndim == 2 or k.shape[:2] == (1, 1):  # dense or 1x1: each run of 8 inputs is all zero or none
            pointwise += 1
            per_input = zero.reshape(-1, k.shape[-1])
            for start in range(0, per_input.shape[0], 8):
                run = per_input[start:start + 8]
                assert (run.all(axis=0) | ~run.any(axis=0)).all(), (name, start)
    assert pointwise > 20
    zeros = sum(int((k == 0).sum()) for _, k in runs) / sum(k.size for _, k in runs)
    assert abs(zeros - 0.5) < 0.03
    assert _int8_gzip(runs) < 0.9 * _int8_gzip(single)


def test_eval_json_report_for_run_and_tflite(pruned_qat_run, tmp_path):
    from click.testing import CliRunner

    from edgeclf.cli import main
    from edgeclf.conversion.pipeline import convert

    run = pruned_qat_run
    result = CliRunner().invoke(main, ["eval", str(run), str(run / "test.npz"), "--json", "-", "-o", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    keras_acc = json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    assert report["accuracy"] == pytest.approx(keras_acc)
    assert set(report) >= {"accuracy", "top5_accuracy", "precision", "recall", "f1", "per_class", "confusion"}
    assert set(report["f1"]) == {"macro", "weighted"} and len(report["per_class"]) == 10
    assert sum(c["count"] for c in report["confusion"]) == report["samples"]
    assert (tmp_path / "e" / "confusion_matrix.png").is_file() and (tmp_path / "e" / "confusion_matrix.json").is_file()

    # this 1-epoch digits model gives near-uniform probabilities, so int8 rounding flips near-ties (seen:
    # agreement 0.60 at max |dp| 0.003); the gate is tested on decisive models in test_convert.py, and
    # here the figures that matter are the eval accuracy and the int8 graph below
    (converted,) = convert(run, to="tflite", quant="int8", out=tmp_path / "conv", verbose=False, max_flip_rate=1.0, max_accuracy_drop=1.0)
    assert converted.parity.max_abs_diff < 0.05
    tfl = converted.path
    result = CliRunner().invoke(main, ["eval", str(tfl), str(run / "test.npz"), "--json", "-", "-o", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    tfl_report = json.loads(result.output)
    assert tfl_report["samples"] == report["samples"]
    assert abs(tfl_report["accuracy"] - report["accuracy"]) <= 0.1
    ops, float_tensors, conv_zeros, values = _int8_graph(tfl)
    # every batch norm folded into its convolution (also after strip_pruning): only the I/O quantise ops,
    # no float MUL/ADD of unfolded batch norms, no DEQUANTIZE, no float weights left behind
    assert set(ops) <= {"QUANTIZE", "CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "SOFTMAX"}, ops
    assert ops["QUANTIZE"] <= 2 and not float_tensors, float_tensors[:5]
    assert conv_zeros >= 0.45  # the pruned zeros survive clustering and PCQAT into the int8 weights
    # clustering survives conversion: every conv and dense filter keeps at most CLUSTERS values per output
    # channel (zero among them); depthwise filters, which tfmot leaves unclustered, show the count is real
    assert len(values["clustered"]) > 30 and max(values["clustered"]) <= CLUSTERS, values["clustered"]
    assert max(values["DEPTHWISE_CONV_2D"]) > CLUSTERS


def test_qat_run_float_files_come_from_its_float_model(pruned_qat_run, tmp_path):
    """A QAT run keeps its float model; fp32 files are made from it (exact), int8 from the QAT model."""
    from edgeclf.artifact import read_metadata
    from edgeclf.conversion.pipeline import convert
    from edgeclf.training.keras_io import FLOAT_MODEL_FILE, load_model

    run = pruned_qat_run
    assert not any("quant" in layer.name for layer in load_model(run / FLOAT_MODEL_FILE).layers)
    (fp32,) = convert(run, to="tflite", quant="fp32", out=tmp_path / "conv", verbose=False)
    assert read_metadata(fp32.path).quantization == "fp32"
    assert fp32.parity.agreement == 1.0 and fp32.parity.max_abs_diff < 1e-4


def _int8_graph(path):
    """Op counts, float32 tensor names, the zero share of the int8 1x1/standard conv filters of a .tflite, and the
    most distinct values in one output channel of each int8 filter: conv and dense ("clustered"), depthwise."""
    from collections import Counter

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_path=str(path),  # no XNNPACK: it would replace the ops with one DELEGATE node
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    ops = Counter(op["op_name"] for op in it._get_ops_details())
    details = it.get_tensor_details()
    kinds = {op["inputs"][1]: op["op_name"] for op in it._get_ops_details()
             if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D")}
    zeros = total = 0
    values: dict[str, list[int]] = {"clustered": [], "DEPTHWISE_CONV_2D": []}
    for d in details:
        if d["index"] not in kinds or d["dtype"] != np.int8:
            continue
        w = it.get_tensor(d["index"])
        if kinds[d["index"]] == "CONV_2D":
            zeros, total = zeros + int((w == 0).sum()), total + w.size
        channels = w.reshape(-1, w.shape[-1]).T if kinds[d["index"]] == "DEPTHWISE_CONV_2D" else w.reshape(len(w), -1)
        key = "DEPTHWISE_CONV_2D" if kinds[d["index"]] == "DEPTHWISE_CONV_2D" else "clustered"
        values[key].append(max(len(np.unique(c)) for c in channels))
    return ops, [d["name"] for d in details if d["dtype"] == np.float32], zeros / total, values


@pytest.mark.parametrize("preserve_sparsity, clusters", [(False, 0), (True, 0), (False, 8)])
def test_qat_activation_ranges_start_from_data_not_tfmot_defaults(preserve_sparsity, clusters):
    """tfmot starts activation ranges at [-6, 6] and moves them 0.1 % a step, so a short QAT phase quantised
    with ranges unrelated to the data; after init_activation_ranges a fresh QAT model follows the float one."""
    import tf_keras as keras

    from edgeclf.training import optimize
    from edgeclf.models import build, set_trainable

    keras.utils.set_random_seed(0)
    model = build("mobilenet_v2", 4, 32, None, 0.0, alpha=0.35)
    set_trainable(model, top_fraction=1.0, train_bn=False)  # as for a pretrained model: BN in inference mode
    if clusters:  # the cluster-preserving scheme (CQAT) wraps the same layers
        model = optimize.strip_clustering(optimize.cluster(model, clusters))
    x = np.random.default_rng(0).uniform(-1, 1, (64, 32, 32, 3)).astype(np.float32)
    name = "block_1_project_BN"  # a linear (un-clipped) activation, small with random weights
    reference = keras.Model(model.input, model.get_layer(name).output)(x).numpy()
    qat = optimize.quantize(model, preserve_sparsity=preserve_sparsity, preserve_clusters=clusters > 0)
    assert optimize.init_activation_ranges(qat, [x[:32], x[32:]]) == 2
    wrapper = qat.get_layer(f"quant_{name}")
    hi = float(wrapper._output_quantizer_vars["max_var"].numpy())
    assert hi == pytest.approx((reference[:32].max() + reference[32:].max()) / 2, rel=0.05)  # not 6.0
    out = keras.Model(qat.input, wrapper.output)(x, training=False).numpy()
    assert np.abs(out - reference).max() < 0.1 * np.abs(reference).max()  # with [-6, 6] every value rounds to 0


def test_explain_writes_a_heat_map(pruned_qat_run, tmp_path):
    import cv2
    from click.testing import CliRunner

    from edgeclf.cli import main

    img = tmp_path / "x.png"
    with np.load(pruned_qat_run / "test.npz") as z:
        cv2.imwrite(str(img), z["images"][0][..., ::-1])
    result = CliRunner().invoke(main, ["explain", str(pruned_qat_run), str(img), "-o", str(tmp_path / "cam.png")])
    assert result.exit_code == 0, result.output
    cam = cv2.imread(str(tmp_path / "cam.png"))
    assert cam.shape == (224, 224, 3)


def test_a_bad_data_set_leaves_no_run_folder(tmp_path):
    from edgeclf.errors import DataError
    from edgeclf.training.trainer import train

    (tmp_path / "data" / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="class folder has no images"):
        train(tmp_path / "data", out=tmp_path / "run", **TINY)
    assert not (tmp_path / "run").exists()


def test_only_the_kernels_cluster_preserving_qat_rebuilds_go_unreported():
    """CQAT computes each kernel from its trained centroids, so Keras's missing-gradient warning for the kernel
    variables is expected and dropped; any other variable without a gradient is still reported."""
    import logging

    from edgeclf.training.optimize import _UnusedKernels

    def record(message: str, names: list[str]) -> logging.LogRecord:
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, (names,), None)

    missing = "Gradients do not exist for variables %s when minimizing the loss."
    quiet = _UnusedKernels()
    assert not quiet.filter(record(missing, ["Conv1/kernel:0", "predictions/kernel:0"]))
    assert quiet.filter(record(missing, ["Conv1/kernel:0", "predictions/bias:0"]))
    assert quiet.filter(record("Something else about %s", ["Conv1/kernel:0"]))
