"""Where images come from: a class-per-folder tree, Fashion-MNIST (Debian package / Keras cache / download),
MNIST and CIFAR-10 through ``keras.datasets``, and scikit-learn's digits."""
from __future__ import annotations

import gzip
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edgeclf.errors import DataError
from edgeclf.runtime.images import IMAGE_SUFFIXES, decodes
from .dataset import Dataset, to_rgb_uint8

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
BUILTIN = ("fashion_mnist", "mnist", "cifar10", "digits")


def load_folder(root: str | os.PathLike) -> Dataset:
    """A class-per-folder tree: each sub-folder of ``root`` is a class; undecodable/empty files are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder not found")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class sub-folders (expected {root}/<class>/<image files>)")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(classes):
        found = sorted(p for p in (root / name).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise DataError(f"{root / name}: class folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        files += found
        labels += [index] * len(found)
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        ok = list(pool.map(decodes, files))
    skipped = [f for f, good in zip(files, ok) if not good]
    if skipped:
        warnings.warn(f"{root}: skipped {len(skipped)} undecodable or empty image file(s), e.g. {skipped[0]}",
                      stacklevel=2)
    keep = [i for i, good in enumerate(ok) if good]
    ds = Dataset(classes, np.asarray(labels)[keep], paths=[files[i] for i in keep], source=str(root), skipped=skipped)
    empty = [classes[c] for c in np.flatnonzero(ds.counts() == 0)]
    if empty:
        raise DataError(f"{root / empty[0]}: class folder has no decodable images")
    return ds


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file, the MNIST family's format: magic, dims, big-endian sizes, raw uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable IDX file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int(v) for v in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(f"{path}: IDX header says {shape} but holds {data.size} bytes (truncated?)")
    return data.reshape(shape)


def _fashion_mnist_dir() -> Path | None:
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()
    for folder in (DEBIAN_FASHION_MNIST, keras_home / "datasets" / "fashion-mnist"):
        if all((folder / f"{p}-{k}-ubyte.gz").is_file() for p in ("train", "t10k")
               for k in ("images-idx3", "labels-idx1")):
            return folder
    return None


def _keras_dataset(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    import tf_keras as keras

    try:
        return getattr(keras.datasets, name).load_data()
    except Exception as exc:  # get_file wraps every network error in a plain Exception
        hint = (" or install the Debian package: apt-get install dataset-fashion-mnist"
                if name == "fashion_mnist" else "")
        raise DataError(f"{name}: not available offline and the download failed ({type(exc).__name__}); "
                        f"it needs internet once (then it stays in ~/.keras/datasets){hint}") from None


def _split_parts(name: str, parts: tuple, part: str | None, classes: list[str]) -> Dataset:
    (xtr, ytr), (xte, yte) = parts
    chosen = {"train": [(xtr, ytr)], "test": [(xte, yte)], None: [(xtr, ytr), (xte, yte)]}[part]
    images = to_rgb_uint8(np.concatenate([x for x, _ in chosen]))
    labels = np.concatenate([np.asarray(y).reshape(-1) for _, y in chosen])
    return Dataset(classes, labels, images=images, source=name)


def load_fashion_mnist(part: str | None = None) -> Dataset:
    """Fashion-MNIST from the Debian package or Keras cache (parsed here), else ``keras.datasets`` online."""
    folder = _fashion_mnist_dir()
    if folder is None:
        parts = _keras_dataset("fashion_mnist")
    else:
        parts = tuple((read_idx(folder / f"{p}-images-idx3-ubyte.gz"), read_idx(folder / f"{p}-labels-idx1-ubyte.gz"))
                      for p in ("train", "t10k"))
    return _split_parts("fashion_mnist", parts, part, FASHION_MNIST_CLASSES)


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits (0..16 grey levels scaled to 0..255)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return Dataset([str(i) for i in range(10)], d.target, images=to_rgb_uint8(d.images * (255.0 / 16.0)),
                   source="digits")


def load_dataset(data: str | os.PathLike, part: str | None = None, limit: int | None = None, seed: int = 0) -> Dataset:
    """A folder or a built-in name (fashion_mnist, mnist, cifar10, digits); ``part`` picks the official
    train/test half of a built-in set (None: all); ``limit`` keeps a stratified, seeded subset."""
    from .splits import stratified_subset

    name = str(data)
    if name in BUILTIN:
        if part not in (None, "train", "test"):
            raise DataError(f"{name}: part must be train, test or None, got {part!r}")
        if name == "fashion_mnist":
            ds = load_fashion_mnist(part)
        elif name == "digits":
            ds = load_digits()
        else:
            classes = [str(i) for i in range(10)] if name == "mnist" else CIFAR10_CLASSES
            ds = _split_parts(name, _keras_dataset(name), part, classes)
    elif Path(name).is_dir():
        ds = load_folder(name)
    else:
        raise DataError(f"{name}: neither a dataset folder nor a built-in data set ({', '.join(BUILTIN)})")
    if limit is not None and limit < len(ds):
        ds = ds.subset(stratified_subset(ds.labels, limit, seed))
    return ds
