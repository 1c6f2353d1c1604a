"""An ONNX Runtime session on the CPU, CUDA, or TensorRT (Jetson) execution provider."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgeclf.artifact.onnx import read_onnx_metadata
from edgeclf.errors import DeviceUnavailableError, EdgeclfError, InvalidModelError, first_line
from edgeclf.runtime.devices import INSTALL_HINT, onnx_providers
from edgeclf.runtime.engine import TensorSpec

_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
               "tensor(int8)": np.int8, "tensor(double)": np.float64, "tensor(int32)": np.int32,
               "tensor(int64)": np.int64}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise EdgeclfError("running .onnx files needs onnxruntime: pip install 'edgeclf[onnx]'") from None
    return onnxruntime


def onnx_session(model: bytes, source: str, providers: list[Any], num_threads: int | None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the model's bytes; load errors name the file in one line."""
    ort = _ort()
    so = ort.SessionOptions()
    if num_threads:
        so.intra_op_num_threads = num_threads
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(model, so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
        raise InvalidModelError(f"{source}: ONNX Runtime could not load the model: {first_line(exc)}") from None


class OnnxBackend:
    """The session reads the checked bytes; its input buffer is an array the adapter owns."""

    def __init__(self, data: bytes, source: str, device: str, num_threads: int | None) -> None:
        self.source = source
        self.records: dict[str, bytes | str] = dict(read_onnx_metadata(data, source))
        ort = _ort()
        self.session = onnx_session(data, source, onnx_providers(device, ort.get_available_providers()), num_threads)
        used = self.session.get_providers()
        if device != "cpu" and used[0] == "CPUExecutionProvider":
            raise DeviceUnavailableError(f"device '{device}' unavailable: ONNX Runtime fell back to the CPU "
                                         f"(CUDA/TensorRT libraries missing?); {INSTALL_HINT[device]}")
        self.name = f"onnxruntime {ort.__version__} ({used[0]})"
        try:
            self.inputs = [self._spec(a) for a in self.session.get_inputs()]
            self.outputs = [self._spec(a) for a in self.session.get_outputs()]
        except UnicodeDecodeError:
            raise InvalidModelError(f"{source}: corrupt ONNX model (tensor names are not UTF-8)") from None
        if not self.inputs or not self.outputs:
            raise InvalidModelError(f"{source}: ONNX model has no inputs or no outputs")
        self.output_kind: str | None = None  # the graph is not inspected: decided from the first outputs
        self._in_name = self.inputs[0].name
        self._out_names = [o.name for o in self.outputs]
        self._buffer: np.ndarray | None = None

    @staticmethod
    def _spec(arg: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
        return TensorSpec(arg.name, shape, np.dtype(_ORT_DTYPES.get(arg.type, np.float32)))

    def input_buffer(self, shape: Sequence[int]) -> np.ndarray:
        if self._buffer is None or self._buffer.shape != tuple(shape):
            self._buffer = np.empty(tuple(shape), self.inputs[0].dtype)
        return self._buffer[0]

    def invoke(self) -> list[np.ndarray]:
        assert self._buffer is not None, "input_buffer() first"
        return self.run(self._buffer)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(self._out_names, {self._in_name: x})
        except Exception as exc:  # onnxruntime's Fail/RuntimeException types
            raise InvalidModelError(f"{self.source}: inference failed: {first_line(exc)}") from None
