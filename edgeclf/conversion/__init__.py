"""The conversion layer (``[train]`` extra): a Keras classifier to parity-gated TFLite / ONNX / Edge TPU / TensorRT.

``source`` loads what conversion starts from, ``calibration`` draws its images, ``tflite`` / ``onnx`` /
``edgetpu`` / ``tensorrt`` build each format, ``parity`` judges each file through the Runtime, and
``pipeline`` runs the formats table's jobs and writes the files atomically with their metadata.
"""
from edgeclf.conversion.pipeline import ConvertResult, convert, plan

__all__ = ["convert", "ConvertResult", "plan"]
