"""The training layer (``[train]`` extra): fine-tune, prune and train quantisation-aware with TensorFlow.

``settings`` holds what a run is (model spec, hyperparameters, splits, strategy), ``trainer`` runs it,
``optimize`` wraps tfmot, ``keras_io`` saves and loads models, ``gradcam`` explains decisions. TensorFlow is
imported only when a function needs it, so importing this package is cheap.
"""
from edgeclf.training.settings import HParams, ModelOptions, Settings, SplitOptions
from edgeclf.training.trainer import train

__all__ = ["train", "Settings", "ModelOptions", "HParams", "SplitOptions"]
