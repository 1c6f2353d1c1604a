"""The evaluation layer: score a model (a .tflite/.onnx through ``Runtime``, or a Keras run) on a data set."""
from edgeclf.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
