"""Fuzzing in the suite: mutated model files and Keras configs may only raise EdgeclfError (a few seconds each;
``EDGECLF_FUZZ_EXAMPLES`` per target raises the count, ``benchmarks/fuzz.py`` runs far more)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fuzzing import DEFAULT_EXAMPLES, fuzz, keras_config_target, model_targets

DATA = Path(__file__).with_name("data")
MODELS = ["float", "uint8", "sealed", "onnx", "support"]


@pytest.fixture(scope="module")
def models(foreign_models, tiny_tflite) -> dict[str, Path]:
    return {**{k: foreign_models[k] for k in ("float", "uint8", "onnx")}, "sealed": tiny_tflite,
            "support": DATA / "tflite_support_uint8_quant.tflite"}


@pytest.mark.parametrize("name", MODELS)
def test_metadata_reader_on_mutated_files(models, name):
    model = models[name]
    outcomes = fuzz(model_targets(model)["metadata"])
    if name == "sealed":  # sealed by edgeclf: every changed byte is caught
        assert set(outcomes) == {"InvalidModelError"}


@pytest.mark.parametrize("name", MODELS)
def test_runtime_on_mutated_files(models, name):
    """In a subprocess, so that a native crash of an interpreter fails the test instead of ending the run."""
    model = models[name]
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("fuzzing.py")), "runtime",
                           str(model), str(DEFAULT_EXAMPLES)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{model.name}: rc={proc.returncode}: {proc.stderr[-1500:]}"
    outcomes = json.loads(proc.stdout.splitlines()[-1])
    assert set(outcomes) <= {"ok", "InvalidModelError"}
    if name == "sealed":
        assert set(outcomes) == {"InvalidModelError"}


def test_keras_config_inspector_on_mutated_configs(tmp_path, keras_model):
    from edgeclf.training.keras_config import read_config
    from edgeclf.training.keras_io import save_model

    for name in ("m.keras", "m.h5"):
        fuzz(keras_config_target(read_config(save_model(keras_model, tmp_path / name))))
