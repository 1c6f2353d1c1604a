"""The evaluation layer: score a model (a .tflite/.onnx through ``Runtime``, or a Keras run) on a data set, and
judge one model's probabilities against another's (``parity``: the statistics of the convert gate and the pick)."""
from edgeclf.evaluation.evaluate import evaluate

__all__ = ["evaluate"]
