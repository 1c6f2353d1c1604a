"""The artifact layer: one self-describing model file, read and written without TensorFlow.

``metadata`` is the record (labels, preprocessing, provenance), ``seal`` its checksum, ``tflite`` / ``onnx`` the
bounds-checked readers and writers of the two containers, ``tflite_standard`` the TFLite metadata standard
that other programs read (written into every .tflite too), ``formats`` the table of formats, ``files`` reads and
writes records in files, and ``describe`` says what a file is from its bytes alone.
"""
from edgeclf.artifact.files import inspect_tflite_file, read_metadata, read_model_bytes, write_metadata
from edgeclf.artifact.formats import FORMATS, Format, format_of, get_format
from edgeclf.artifact.metadata import (COLOR_ORDERS, LAYOUTS, METADATA_KEY, OUTPUT_KINDS, RESIZE_POLICIES, Metadata,
                                       Preprocess, read_labels)
from edgeclf.artifact.seal import parse_embedded, seal, verify_sealed

__all__ = ["Metadata", "Preprocess", "read_labels", "read_metadata", "write_metadata", "read_model_bytes",
           "inspect_tflite_file", "FORMATS", "Format", "format_of", "get_format", "METADATA_KEY", "COLOR_ORDERS",
           "RESIZE_POLICIES", "LAYOUTS", "OUTPUT_KINDS", "seal", "verify_sealed", "parse_embedded"]
