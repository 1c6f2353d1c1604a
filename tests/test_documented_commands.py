"""Every command README.md's bash blocks and the demo report's "Run it" block print runs as printed.

Each ``edgeclf`` line is parsed in full by click (types, choices and existence checks, against empty stand-in
files and folders made for the paths it names). The lines that can run here quickly are also executed, on stand-in
files (the tiny test model, a few images): see EXECUTED. The rest need hardware (a camera, a Coral, a Jetson),
a trained run folder or minutes of training, so they are only parsed. Script lines (``python ...py``) are checked
against the script's ``--help``: every flag they use must be one it has.
"""
from __future__ import annotations

import glob
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from edgeclf.cli import main
from edgeclf.demo.report import shell_commands

from conftest import CLASSES

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "examples" / "raspberrypi" / "README.md"]
# README lines executed on stand-ins (the rest are parsed only)
EXECUTED = {"edgeclf info model.tflite", "edgeclf predict model.tflite cat.jpg --top-k 3 --json -"}


def _shell_lines(text: str) -> list[str]:
    """The commands of a text's fenced bash/sh blocks: continuations joined, comments dropped, split at &&."""
    lines: list[str] = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index("&&") if "&&" in words else len(words)
                if words[:cut]:
                    lines.append(shlex.join(words[:cut]))
                words = words[cut + 1:]
    return lines


def _edgeclf_lines(lines: list[str]) -> list[list[str]]:
    return [words[1:] for words in map(shlex.split, lines) if Path(words[0]).name == "edgeclf"]


def _script_lines(lines: list[str]) -> list[list[str]]:
    return [words[1:] for words in map(shlex.split, lines)
            if Path(words[0]).name.startswith("python") and len(words) > 1 and words[1].endswith(".py")]


README_COMMANDS = _edgeclf_lines([line for doc in DOCS for line in _shell_lines(doc.read_text())])
SCRIPT_COMMANDS = _script_lines([line for doc in DOCS for line in _shell_lines(doc.read_text())])


def test_the_readme_has_commands():
    assert len(README_COMMANDS) >= 15 and SCRIPT_COMMANDS


def _stand_ins(args: list[str], root: Path) -> list[str]:
    """Empty files (a name with a suffix) or folders for every path-like argument (not numbers), globs expanded as
    a shell would."""
    out: list[str] = []
    for arg in args:
        if arg.startswith("-") or ("/" not in arg and "." not in arg) or "://" in arg or re.fullmatch(r"[\d.,]+", arg):
            out.append(arg)
            continue
        path = root / arg.replace("*", "m")
        if arg.endswith("/") or not path.suffix:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
        out.extend(sorted(glob.glob(str(root / arg))) or [str(root / arg)])
    return out


@pytest.mark.parametrize("args", README_COMMANDS, ids=shlex.join)
def test_readme_command_parses(args, tmp_path):
    name, rest = args[0], _stand_ins(args[1:], tmp_path)
    cmd = main.get_command(click.Context(main), name)
    assert cmd is not None, f"no command {name!r}"
    with cmd.make_context(name, rest):  # raises on an unknown option, a bad value or a missing file
        pass


@pytest.mark.parametrize("args", SCRIPT_COMMANDS, ids=shlex.join)
def test_script_flags_exist(args):
    script = next(p for p in (ROOT / args[0], ROOT / "examples" / "raspberrypi" / Path(args[0]).name) if p.is_file())
    usage = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                           env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert usage.returncode == 0, usage.stderr[-2000:]
    for flag in (a.split("=")[0] for a in args[1:] if a.startswith("--")):
        assert flag in usage.stdout, (script.name, flag)


@pytest.fixture
def stand_in_images(tmp_path) -> Path:
    root = tmp_path / "test_images"
    for i, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        cv2.imwrite(str(root / name / "00000.png"), np.full((28, 28, 3), 60 * i, np.uint8))
    return root


@pytest.mark.parametrize("line", sorted(EXECUTED))
def test_readme_command_runs(line, tiny_tflite, stand_in_images, tmp_path, monkeypatch):
    assert shlex.split(line)[1:] in README_COMMANDS, f"{line!r} is no longer in the README"
    shutil.copy(tiny_tflite, tmp_path / "model.tflite")
    shutil.copy(stand_in_images / "cat" / "00000.png", tmp_path / "cat.jpg")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, shlex.split(line)[1:])
    assert res.exit_code == 0, res.output


def test_demo_report_commands_run(tiny_tflite, stand_in_images, tmp_path, monkeypatch):
    """The report's lines with the tiny model standing in for the demo's files: both edgeclf lines are executed
    (the shell's glob expanded here), the camera script's line is parsed against its --help."""
    out = stand_in_images.parent
    int8 = out / "models" / "model_int8.tflite"
    int8.parent.mkdir()
    shutil.copy(tiny_tflite, int8)
    lines = shell_commands(out, int8, [int8]).splitlines()
    assert [shlex.split(line)[0] for line in lines] == ["edgeclf", "edgeclf", "python3"]
    monkeypatch.chdir(tmp_path)
    for words in _edgeclf_lines(lines):
        args = [m for a in words for m in (sorted(glob.glob(a)) if "*" in a else [a])]
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, (words, res.output)
    test_script_flags_exist(_script_lines(lines)[0])
