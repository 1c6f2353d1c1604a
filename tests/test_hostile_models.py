"""Keras model files whose loading would run code: refused before any of it runs, loaded only on request."""
from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgeclf.cli import main
from edgeclf.errors import InvalidModelError
from edgeclf.training.keras_config import check_config
from edgeclf.training.keras_io import load_model, save_model


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """A model with a Lambda layer that writes a marker file when it runs, saved in every Keras format."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("hostile")
    marker = d / "pwned"
    payload = eval(f"lambda x: (open({str(marker)!r}, 'w').write('pwned'), x)[1]")  # the path is in the bytecode
    inp = keras.Input((4,))
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Lambda(payload, name="lambda_3")(inp)))
    files = {"h5": save_model(model, d / "model.h5"), "keras": save_model(model, d / "model.keras"),
             "savedmodel": d / "saved"}
    model.save(str(files["savedmodel"]), save_format="tf")
    files["renamed"] = d / "renamed.keras"
    shutil.copy(files["h5"], files["renamed"])
    marker.unlink()  # building and saving ran the lambda; loading must not
    return {**files, "marker": marker}


@pytest.mark.parametrize("kind", ["h5", "keras", "renamed", "savedmodel"])
def test_lambda_layers_are_refused_before_they_run(hostile, kind):
    with pytest.raises(InvalidModelError, match=r"layer 'lambda_3' is a Lambda layer, whose code would run on load; "
                                                r"pass --unsafe-load"):
        load_model(hostile[kind])
    assert not hostile["marker"].exists()


@pytest.mark.parametrize("kind", ["h5", "keras"])
def test_unsafe_load_runs_the_code_on_request(hostile, kind):
    try:
        assert load_model(hostile[kind], unsafe_load=True).get_layer("lambda_3")
        assert hostile["marker"].read_text() == "pwned"
    finally:
        hostile["marker"].unlink(missing_ok=True)


def test_a_module_outside_the_allowed_packages_is_refused(hostile, tmp_path):
    with zipfile.ZipFile(hostile["keras"]) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    dense = config["config"]["layers"][-1]
    dense["config"]["kernel_initializer"] = {"module": "os", "class_name": "system", "config": {},
                                             "registered_name": None}
    members["config.json"] = json.dumps(config).encode()
    forged = tmp_path / "forged.keras"
    with zipfile.ZipFile(forged, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    with pytest.raises(InvalidModelError, match=rf"forged.keras: layer '{dense['config']['name']}' names module 'os'"):
        load_model(forged)


@pytest.mark.parametrize("obj, why", [
    ({"class_name": "Popen", "config": {"name": "p"}}, "layer 'p' is a 'Popen' object, which is not a built-in"),
    ({"class_name": "function", "module": "keras.activations", "config": "eval"}, "names function 'eval'"),
    ({"class_name": "function", "config": {"name": "f"}}, "names function"),  # found by benchmarks/fuzz.py
    ({"class_name": "TFOpLambda", "config": {"name": "w", "function": "io.write_file"}}, "calls TensorFlow function"),
    ({"class_name": "__lambda__", "config": {"code": "..."}}, "is a Lambda layer"),
    ({"class_name": 3}, "malformed class name"),
])
def test_foreign_objects_in_a_config_are_named(obj, why):
    config = {"class_name": "Sequential", "config": {"name": "m", "layers": [{"class_name": "Dense",
                                                                           "config": {"name": "d", "units": 2}}, obj]}}
    with pytest.raises(InvalidModelError, match=why):
        check_config(config, "m.json")


def test_ordinary_and_quantisation_aware_models_still_load(tmp_path, keras_model):
    from edgeclf.training.optimize import quantize

    qat = quantize(keras_model)
    for model, name in [(keras_model, "plain.keras"), (keras_model, "plain.h5"), (qat, "qat.keras")]:
        loaded = load_model(save_model(model, tmp_path / name))
        assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_the_cli_refuses_in_one_line(hostile, tmp_path):
    result = CliRunner().invoke(main, ["convert", str(hostile["h5"]), "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeclf: error: ") and "lambda_3" in lines[0]
    assert not hostile["marker"].exists()
