"""Which images fit the int8 ranges and which judge the file: never the same ones when others exist.

In order: ``--check`` (labelled when it is a class-per-folder tree); a run folder's ``test.npz`` (labelled);
otherwise the calibration images, split in two when int8 ranges are fitted to them (fit on one half, judge on
the other); seeded random images when nothing was given (float files only).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeclf.artifact import Preprocess
from edgeclf.conversion.calibration import images_from_dir, images_from_npz, random_images
from edgeclf.data import class_map
from edgeclf.data.loaders import load_folder
from edgeclf.errors import DataError
from edgeclf.runtime.images import IMAGE_SUFFIXES
from edgeclf.runtime.preprocess import resize_geometry

CHECK_LIMIT = 1000
log = logging.getLogger("edgeclf")


@dataclass
class CheckSet:
    """Calibration images (or None), check images with their model-index labels (or None), and where they came from."""

    calib: np.ndarray | None
    check: np.ndarray
    truth: np.ndarray | None
    source: str


def _is_class_tree(root: Path) -> bool:
    """Sub-folders holding the images and no loose image at the top: a class-per-folder tree."""
    loose = any(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir())
    return not loose and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir())


def labelled_from_dir(folder: str | os.PathLike, pre: Preprocess, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """A class-per-folder tree's images at the input size and their model output indices (``class_map``)."""
    ds = load_folder(folder)
    pick = np.sort(np.random.default_rng(0).permutation(len(ds))[:CHECK_LIMIT])
    ds = ds.subset(pick)
    mapping = class_map(ds.class_names, labels, str(folder))
    return np.stack([resize_geometry(ds.image_bgr(i), pre) for i in range(len(ds))]), mapping[ds.labels]


def _labelled_npz(path: Path, pre: Preprocess) -> tuple[np.ndarray, np.ndarray]:
    images = images_from_npz(path, pre, CHECK_LIMIT)
    with np.load(path) as z:
        labels = np.asarray(z["labels"], np.int64)
    if len(labels) < len(images):
        raise DataError(f"{path}: {len(labels)} labels for more images")
    pick = np.sort(np.random.default_rng(0).permutation(len(labels))[:CHECK_LIMIT]) if len(labels) > CHECK_LIMIT else None
    return images, labels if pick is None else labels[pick]


def _halves(images: np.ndarray, calib_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split: the first half fits the ranges (up to ``calib_samples``), the rest judges."""
    order = np.random.default_rng(1).permutation(len(images))
    cut = (len(images) + 1) // 2
    return images[np.sort(order[:cut][:calib_samples])], images[np.sort(order[cut:][:CHECK_LIMIT])]


def choose(pre: Preprocess, labels: list[str], calib: str | os.PathLike | None, calib_npz: Path | None,
           test_npz: Path | None, calib_samples: int, check: str | os.PathLike | None, need_calib: bool) -> CheckSet:
    """The images of one ``convert`` call (see the module docstring for the order)."""
    pool, pool_name = None, ""
    if calib is not None:  # read every file: half of them may judge
        limit = 2 * calib_samples if need_calib and check is None else calib_samples
        pool, pool_name = images_from_dir(calib, pre, limit), "calibration"
    elif calib_npz is not None:
        pool, pool_name = images_from_npz(calib_npz, pre, None), "calib.npz"
    if need_calib and pool is None:
        raise DataError("int8 conversion needs calibration images: pass --calib DIR (a folder of representative images)")
    if check is not None:
        root = Path(check)
        if root.is_dir() and _is_class_tree(root):
            images, truth = labelled_from_dir(root, pre, labels)
            return CheckSet(_fit(pool, calib_samples), images, truth, f"labelled check ({root.name})")
        return CheckSet(_fit(pool, calib_samples), images_from_dir(root, pre, CHECK_LIMIT), None, f"check ({root.name})")
    if test_npz is not None:
        images, truth = _labelled_npz(test_npz, pre)
        return CheckSet(_fit(pool, calib_samples), images, truth, "labelled test.npz")
    if pool is None:
        return CheckSet(None, random_images(pre, 64), None, "random (no --calib/--check given)")
    if not need_calib:
        return CheckSet(_fit(pool, calib_samples), pool[:CHECK_LIMIT], None, pool_name)
    if len(pool) < 2:
        raise DataError(f"only {len(pool)} {pool_name} image: int8 needs more, to fit ranges on some and judge on others")
    fit, judge = _halves(pool, calib_samples)
    log.info("no --check: int8 ranges fitted on %d %s images, the file judged on the other %d", len(fit), pool_name, len(judge))
    return CheckSet(fit, judge, None, f"held-out {pool_name}")


def _fit(pool: np.ndarray | None, calib_samples: int) -> np.ndarray | None:
    """At most ``calib_samples`` of the pool, spread by a seeded shuffle."""
    if pool is None or len(pool) <= calib_samples:
        return pool
    return pool[np.sort(np.random.default_rng(0).permutation(len(pool))[:calib_samples])]
