"""Data for training and evaluation: loaders, the common ``Dataset`` form, stratified splits, the tf.data pipeline.

Importing this package does not import TensorFlow; ``edgeclf.data.pipeline`` does.
"""
from __future__ import annotations

from .dataset import Dataset, class_map, folder_name
from .loaders import BUILTIN, load_dataset, load_digits, load_fashion_mnist, load_folder, read_idx
from .splits import Splits, split, stratified_subset

__all__ = ["Dataset", "folder_name", "class_map", "Splits", "BUILTIN", "load_dataset", "load_folder", "load_fashion_mnist", "load_digits",
           "read_idx", "split", "stratified_subset"]
