"""``deploy.json``: which file, backend, device and threads to run here, as ``bench --pick`` chose them.

The model path is stored relative to the deploy.json, so the folder moves as one; the measured figures and
the machine they were measured on are kept for provenance (``Runtime.from_deploy`` reads only what it runs).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgeclf.errors import DataError
from edgeclf.fileio import atomic_write_text

DEPLOY_VERSION = 1
RUN_KEYS = ("model", "backend", "device", "threads", "options")


def write_deploy(target: str | os.PathLike, model: str | os.PathLike, backend: str, device: str, threads: int | None,
                 options: dict[str, Any], provenance: dict[str, Any]) -> Path:
    """Write a deploy.json naming ``model`` relative to it; ``options`` are ``Runtime`` keyword arguments."""
    target = Path(target)
    rel = os.path.relpath(Path(model).resolve(), target.resolve().parent)
    record = {"edgeclf_deploy": DEPLOY_VERSION, "model": Path(rel).as_posix(), "backend": backend, "device": device,
              "threads": threads, "options": options, **provenance}
    return atomic_write_text(target, json.dumps(record, indent=2) + "\n")


def read_deploy(path: str | os.PathLike) -> dict[str, Any]:
    """The run settings of a deploy.json (model resolved against its folder); one clear error when it is not one."""
    p = Path(path)
    try:
        record = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: unreadable deploy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(record, dict) or record.get("edgeclf_deploy") != DEPLOY_VERSION or not set(RUN_KEYS) <= record.keys():
        raise DataError(f"{p}: not an 'edgeclf bench --pick' deploy file (version {DEPLOY_VERSION} with "
                        f"{', '.join(RUN_KEYS)})")
    run = {k: record[k] for k in RUN_KEYS}
    run["model"] = str(p.parent / run["model"])
    return run
