"""An OpenVINO compiled model for ``.onnx`` files, on the CPU (or an Intel GPU), tuned for one image at a time."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgeclf.artifact.onnx import read_onnx_metadata
from edgeclf.errors import DeviceUnavailableError, EdgeclfError, InvalidModelError, first_line
from edgeclf.runtime.engine import TensorSpec

OPENVINO_DEVICES = {"cpu": "CPU", "gpu": "GPU"}  # edgeclf device -> OpenVINO device name


def _ov() -> Any:
    try:
        import openvino
    except ImportError:
        raise EdgeclfError('the openvino backend needs OpenVINO: pip install "edgeclf[openvino]"') from None
    return openvino


def _ov_device(core: Any, device: str) -> str:
    """OpenVINO's name for ``device``; unavailable when this machine (or OpenVINO) has no such device."""
    name = OPENVINO_DEVICES.get(device)
    if name is None:
        raise DeviceUnavailableError(f"device '{device}' unavailable: OpenVINO runs on {', '.join(OPENVINO_DEVICES)}; "
                                     "use the onnxruntime backend")
    if name not in core.available_devices:
        raise DeviceUnavailableError(f"device '{device}' unavailable: OpenVINO sees {core.available_devices} "
                                     "(an Intel GPU needs its OpenCL/Level Zero driver)")
    return name


class OpenVinoBackend:
    """Reads the checked bytes (no temporary file); ``invoke`` runs on an input array shared with the request."""

    def __init__(self, data: bytes, source: str, device: str, num_threads: int | None) -> None:
        self.source = source
        self.records: dict[str, bytes | str] = dict(read_onnx_metadata(data, source))
        ov = _ov()
        core = ov.Core()
        target = _ov_device(core, device)
        # f32: the file runs at the precision it was checked at (OpenVINO would pick bf16 on CPUs that have it,
        # f16 on GPUs, and silently move the probabilities)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if num_threads and target == "CPU":
            config["INFERENCE_NUM_THREADS"] = num_threads
        try:
            model = core.read_model(model=data)
            self._compiled = core.compile_model(model, target, config)
        except Exception as exc:  # OpenVINO raises RuntimeError/its own types for unreadable or unsupported graphs
            raise InvalidModelError(f"{source}: OpenVINO could not load the model: {first_line(exc)}") from None
        self._request = self._compiled.create_infer_request()
        self._ov = ov
        self.name = f"openvino {ov.__version__.split('-')[0]} ({target})"
        self.inputs = [self._spec(p) for p in model.inputs]
        self.outputs = [self._spec(p) for p in model.outputs]
        self.output_kind: str | None = None  # the graph is not inspected: decided from the first outputs
        self._buffer: np.ndarray | None = None
        self._bound = False  # whether the request's input is still the shared buffer (``run`` replaces it)

    @staticmethod
    def _spec(port: Any) -> TensorSpec:
        shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))

    def input_buffer(self, shape: Sequence[int]) -> np.ndarray:
        if self._buffer is None or self._buffer.shape != tuple(shape):
            self._buffer = np.empty(tuple(shape), self.inputs[0].dtype)
            self._bound = False
        return self._buffer[0]

    def invoke(self) -> list[np.ndarray]:
        assert self._buffer is not None, "input_buffer() first"
        if not self._bound:
            self._request.set_input_tensor(self._ov.Tensor(self._buffer, shared_memory=True))
            self._bound = True
        try:
            self._request.infer()
        except Exception as exc:  # OpenVINO's RuntimeError for a bad shape or a failed kernel
            raise InvalidModelError(f"{self.source}: inference failed: {first_line(exc)}") from None
        return [self._request.get_output_tensor(i).data.copy() for i in range(len(self.outputs))]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self._bound = False
        try:
            return list(self._request.infer({0: x}, share_inputs=True).to_tuple())
        except Exception as exc:  # OpenVINO's RuntimeError for a bad shape or a failed kernel
            raise InvalidModelError(f"{self.source}: inference failed: {first_line(exc)}") from None
