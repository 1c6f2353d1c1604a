"""Data: folder loading with bad files, built-in sets, stratified seeded splits, the tf.data pipeline."""
from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeclf.artifact import Preprocess
from edgeclf.data import load_dataset, load_digits, load_folder, split, stratified_subset
from edgeclf.data.loaders import DEBIAN_FASHION_MNIST
from edgeclf.errors import DataError
from edgeclf.runtime.images import load_image
from edgeclf.runtime.preprocess import prepare


def make_folder(root: Path, classes=("a", "b", "c"), per_class: int = 12, size: int = 20) -> Path:
    """Class folders of small coloured images with class-dependent content, in mixed formats and case."""
    rng = np.random.default_rng(0)
    suffixes = [".png", ".JPG", ".bmp", ".webp", ".jpeg"]
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (size, size + 4, 3), dtype=np.uint8)
            img[:, :, k % 3] += 150
            assert cv2.imwrite(str(root / name / f"img{i}{suffixes[i % len(suffixes)]}"), img)
    return root


def test_folder_skips_corrupt_and_empty_files_in_one_warning(tmp_path):
    root = make_folder(tmp_path / "ds")
    (root / "a" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "b" / "empty.png").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("ignored: not an image suffix")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_folder(root)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "skipped 2" in messages[0]
    assert "corrupt.jpg" in messages[0] or "empty.png" in messages[0]
    assert len(ds) == 36 and ds.class_names == ["a", "b", "c"]
    assert list(ds.counts()) == [12, 12, 12]
    assert {p.name for p in ds.skipped} == {"corrupt.jpg", "empty.png"}


def test_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match="no class sub-folders"):
        load_folder(tmp_path)
    root = make_folder(tmp_path / "ds", classes=("a",), per_class=2)
    (root / "empty_class").mkdir()
    with pytest.raises(DataError, match="empty_class"):
        load_folder(root)
    with pytest.raises(DataError, match="neither a dataset folder"):
        load_dataset(tmp_path / "missing")


def test_split_is_stratified_seeded_and_disjoint():
    ds = load_digits()
    a, b, c = split(ds, seed=3), split(ds, seed=3), split(ds, seed=4)
    assert np.array_equal(a.test.labels, b.test.labels) and np.array_equal(a.test.images, b.test.images)
    assert not np.array_equal(a.test.images, c.test.images)
    from edgeclf.data.splits import split_indices
    parts = split_indices(ds.labels, [0.1, 0.1, 0.05], 3)
    assert sum(len(p) for p in parts) == len(ds)
    assert len(np.unique(np.concatenate(parts))) == len(ds)
    # stratified: every class's share of the test set matches its share of the whole within one image
    expected = ds.counts() * len(a.test) / len(ds)
    assert np.all(np.abs(a.test.counts() - expected) <= 1.5)
    assert np.all(a.calib.counts() >= 1) and np.all(a.val.counts() >= 1)


def test_split_caps_calibration_and_subset_is_stratified():
    ds = load_digits()
    s = split(ds, calib=0.2, calib_max=50, seed=0)
    assert len(s.calib) <= 52 and len(s.train) + len(s.val) + len(s.test) + len(s.calib) == len(ds)
    idx = stratified_subset(ds.labels, 100, seed=1)
    assert abs(len(idx) - 100) <= 5 and np.all(np.bincount(ds.labels[idx], minlength=10) >= 9)


def test_digits_are_rgb_uint8():
    ds = load_digits()
    assert ds.images.shape == (1797, 8, 8, 3) and ds.images.dtype == np.uint8 and ds.images.max() == 255


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_debian_files():
    train = load_dataset("fashion_mnist", part="train")
    test = load_dataset("fashion_mnist", part="test")
    assert train.images.shape == (60000, 28, 28, 3) and len(test) == 10000
    assert list(test.counts()) == [1000] * 10 and train.class_names[9] == "Ankle boot"
    small = load_dataset("fashion_mnist", limit=200, seed=0)
    assert abs(len(small) - 200) <= 10 and np.all(small.counts() >= 18)


def test_pipeline_matches_runtime_preprocessing(tmp_path):
    root = make_folder(tmp_path / "ds", per_class=4)
    ds = load_folder(root)
    pre = Preprocess(input_size=(16, 16), mean=(127.5,), std=(127.5,), resize="crop")
    batches = list(make_eval(ds, pre))
    images = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    expected = np.stack([prepare(load_image(p), pre) for p in ds.paths]).astype(np.float32)
    np.testing.assert_allclose(images, (expected - 127.5) / 127.5, atol=1e-6)
    assert np.array_equal(labels.argmax(1), ds.labels)
    assert np.array_equal(ds.prepared(pre), expected.astype(np.uint8))


def make_eval(ds, pre):
    from edgeclf.data.pipeline import make_pipeline
    return make_pipeline(ds, pre, batch_size=5).as_numpy_iterator()


def test_training_pipeline_augments_within_range(tmp_path):
    from edgeclf.data.augment import Augment
    from edgeclf.data.pipeline import make_pipeline

    ds = load_digits().subset(np.arange(64))
    pre = Preprocess(input_size=(32, 32), mean=(127.5,), std=(127.5,))
    aug = Augment(mixup=0.4, cutmix=1.0)
    images, labels = next(make_pipeline(ds, pre, 32, training=True, augment=aug).as_numpy_iterator())
    plain, _ = next(make_pipeline(ds, pre, 32).as_numpy_iterator())
    assert images.shape == (32, 32, 32, 3) and images.min() >= -1.0 - 1e-6 and images.max() <= 1.0 + 1e-6
    np.testing.assert_allclose(labels.sum(1), 1.0, atol=1e-5)
    assert (labels.max(1) < 1.0).any()          # mixup/cutmix produced soft labels
    assert not np.allclose(images, plain)
