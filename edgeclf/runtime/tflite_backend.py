"""A TFLite interpreter (ai-edge-litert or tflite-runtime) on the CPU (XNNPACK), an Edge TPU or a GPU delegate."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from edgeclf.artifact.tflite import EDGETPU_OP, inspect_tflite
from edgeclf.errors import DeviceUnavailableError, EdgeclfError, InvalidModelError, first_line
from edgeclf.runtime.devices import tflite_delegates
from edgeclf.runtime.engine import TensorSpec


def tflite_module() -> tuple[Any, str]:
    """The first TFLite interpreter module installed: ai_edge_litert, then tflite_runtime."""
    try:
        import ai_edge_litert
        from ai_edge_litert import interpreter
        return interpreter, f"ai_edge_litert {ai_edge_litert.__version__}"
    except ImportError:
        pass
    try:
        import tflite_runtime
        from tflite_runtime import interpreter
        return interpreter, f"tflite_runtime {tflite_runtime.__version__}"
    except ImportError:
        raise EdgeclfError("no TFLite runtime installed: pip install ai-edge-litert") from None


class TFLiteBackend:
    """Loads the checked bytes themselves (``model_content``), so what was verified is what runs."""

    def __init__(self, data: bytes, source: str, device: str, num_threads: int | None) -> None:
        self.source = source
        info = inspect_tflite(data, source)
        self.records: dict[str, bytes | str] = dict(info.metadata)
        self.output_kind: str | None = "probabilities" if info.softmax_output else "logits"
        compiled = EDGETPU_OP in info.custom_ops
        if device == "coral" and not compiled:
            raise InvalidModelError(f"{source}: not compiled for the Edge TPU; run 'edgeclf convert --to edgetpu' "
                                    "and use the *_edgetpu.tflite file")
        if compiled and device != "coral":
            raise InvalidModelError(f"{source}: compiled for the Edge TPU; run it with device='coral' "
                                    "(or use the plain int8 .tflite on the CPU)")
        if device == "jetson":
            raise DeviceUnavailableError(f"{source}: TFLite has no Jetson path; convert to ONNX and run the .onnx "
                                         "with device='jetson' (ONNX Runtime TensorRT provider)")
        module, name = tflite_module()
        delegates, delegate = tflite_delegates(module, device)
        try:
            self.interpreter = module.Interpreter(model_content=data, num_threads=num_threads,
                                                  experimental_delegates=delegates or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InvalidModelError(f"{source}: the TFLite interpreter rejected the model: {first_line(exc)}") from None
        self.name = f"{name} ({delegate})"
        details_in, details_out = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        self._in = [d["index"] for d in details_in]
        self._out = [d["index"] for d in details_out]
        self.inputs = [self._spec(d) for d in details_in]
        self.outputs = [self._spec(d) for d in details_out]
        self._batch = self.inputs[0].shape[0]

    @staticmethod
    def _spec(d: dict[str, Any]) -> TensorSpec:
        shape = tuple(int(x) for x in d.get("shape_signature", d["shape"]))
        scale, zp = d.get("quantization", (0.0, 0))
        return TensorSpec(d["name"], shape, np.dtype(d["dtype"]), float(scale), int(zp))

    def _batch_of(self, shape: Sequence[int]) -> None:
        """Resize a dynamic-batch input to ``shape``'s batch size when it differs from the current one."""
        if shape[0] != self._batch and self.inputs[0].shape[0] == -1:
            self.interpreter.resize_tensor_input(self._in[0], list(shape))
            self.interpreter.allocate_tensors()
            self._batch = shape[0]

    def input_buffer(self, shape: Sequence[int]) -> np.ndarray:
        """The interpreter's own input memory (as pycoral's ``input_tensor``): written once, no copy. TFLite
        refuses to invoke while a view is held, so callers let it go before ``invoke``."""
        try:  # a corrupt file can leave the input unallocated (ValueError) or refuse a new batch (RuntimeError)
            self._batch_of(shape)
            return self.interpreter.tensor(self._in[0])()[0]
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelError(f"{self.source}: unusable input tensor: {first_line(exc)}") from None

    def invoke(self) -> list[np.ndarray]:
        try:
            self.interpreter.invoke()
            return [self.interpreter.get_tensor(i) for i in self._out]
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelError(f"{self.source}: inference failed: {first_line(exc)}") from None

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self._batch_of(x.shape)
        try:
            self.interpreter.set_tensor(self._in[0], x)
        except ValueError as exc:
            raise InvalidModelError(f"{self.source}: bad input tensor: {first_line(exc)}") from None
        return self.invoke()
