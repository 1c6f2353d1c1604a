"""The on-device layer: ``Runtime`` runs a .tflite or .onnx file on a device with numpy, OpenCV and an engine.

``images`` decodes pictures, ``preprocess`` fits and encodes them, ``devices`` / ``*_backend`` are the engine
adapters, ``outputs`` reads the result vector, and ``runtime`` ties them into ``predict``. No TensorFlow.
"""
from edgeclf.runtime.runtime import Prediction, Runtime

__all__ = ["Runtime", "Prediction"]
