"""One command-line grammar: the same option names, defaults, errors and exit codes in every subcommand, and
library code that logs rather than prints. Parsing only (no command body runs), so these take milliseconds."""
from __future__ import annotations

import ast
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgeclf.cli import COMMANDS, main
from edgeclf.cli.options import TOP_K

ROOT = Path(__file__).resolve().parents[1]
MODEL_COMMANDS = ["info", "predict", "eval", "explain", "convert", "bench", "run", "serve"]
RUNTIME_COMMANDS = ["info", "predict", "eval", "bench", "run", "serve"]  # open a model file with the Runtime
JSON_COMMANDS = ["info", "predict", "eval", "bench", "run"]
OUT_COMMANDS = ["train", "eval", "explain", "convert", "demo"]


def _command(name: str) -> click.Command:
    return main.get_command(click.Context(main), name)


def _options(name: str) -> dict[str, click.Option]:
    return {opt: p for p in _command(name).params if isinstance(p, click.Option) for opt in p.opts}


@pytest.mark.parametrize("name", MODEL_COMMANDS)
def test_missing_model_is_the_same_error_everywhere(name, tmp_path):
    extra = {"predict": ["x.png"], "eval": ["data"], "explain": ["x.png"]}.get(name, [])
    missing = tmp_path / "nope.tflite"
    res = CliRunner().invoke(main, [name, str(missing), *extra])
    assert res.exit_code == 1, res.output
    assert res.output == f"edgeclf: error: {missing}: no such file or folder\n"


@pytest.mark.parametrize("name", JSON_COMMANDS)
def test_json_takes_a_path_or_dash(name):
    opt = _options(name)["--json"]
    assert not opt.is_flag and isinstance(opt.type, click.Path) and opt.type.allow_dash


@pytest.mark.parametrize("name", OUT_COMMANDS)
def test_out_is_dash_o(name):
    assert _options(name)["-o"] is _options(name)["--out"]


def test_top_k_default_is_shared():
    assert {n: _options(n)["--top-k"].default for n in ("predict", "run", "serve")} == dict.fromkeys(
        ("predict", "run", "serve"), TOP_K)


@pytest.mark.parametrize("name", RUNTIME_COMMANDS)
def test_runtime_commands_take_the_options_their_errors_name(name):
    """The Runtime's messages tell users to pass an input size etc.: every command opening a file has them."""
    opts = _options(name)
    for flag in ("--device", "--threads", "--input-size", "--crop-ratio", "--output", "--labels", "--mean"):
        assert flag in opts, (name, flag)


def test_device_takes_one_name_except_in_bench():
    res = CliRunner().invoke(main, ["info", __file__, "--device", "cpu,gpu"])
    assert res.exit_code == 2 and "one device" in res.output
    ctx = _command("bench").make_context("bench", [__file__, "--device", "cpu,gpu"])
    assert ctx.params["device"] == ["cpu", "gpu"]
    ctx = _command("predict").make_context("predict", [__file__, "x.png", "--input-size", "224x160"])
    assert ctx.params["input_size"] == (224, 160)


def test_verbosity_on_the_group():
    assert {"-v", "-q"} <= {o for p in main.params for o in p.opts}
    assert set(COMMANDS) == set(main.list_commands(click.Context(main)))


def test_library_logs_instead_of_printing():
    """No ``print()`` in edgeclf/ outside the CLI; the rich table printers write through a Console."""
    offenders = []
    for path in (ROOT / "edgeclf").rglob("*.py"):
        if "cli" in path.relative_to(ROOT / "edgeclf").parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders
