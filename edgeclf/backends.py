"""Thin adapters over the two inference engines, chosen by file suffix (``open_backend``).

Each adapter exposes the same small surface: ``inputs``/``outputs`` (``TensorSpec``), ``run(x)``,
``metadata_json``, ``name`` (engine, version and delegate/provider actually in use). Devices map to
delegates (TFLite) or execution providers (ONNX Runtime); a device that is not present raises
``DeviceUnavailableError`` saying what to install, never a silent CPU fallback.
"""
from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifact import METADATA_KEY, verify_sealed
from .errors import DeviceUnavailableError, EdgeclfError, InvalidModelError, ModelNotFoundError
from .tflite_metadata import METADATA_NAME, read_standard_metadata

DEVICES = ("cpu", "gpu", "coral", "jetson")
EDGETPU_OP = "edgetpu-custom-op"
EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
TFLITE_GPU_LIB = "libtensorflowlite_gpu_delegate.so"
INSTALL_HINT = {
    "coral": "install the Edge TPU runtime (Coral's apt repository: sudo apt-get install libedgetpu1-std) "
             "and plug in the accelerator",
    "gpu": "install onnxruntime-gpu with CUDA and cuDNN (pip install onnxruntime-gpu) and use the .onnx file",
    "jetson": "install NVIDIA's onnxruntime-gpu wheel for JetPack (with TensorRT) and use the .onnx file",
}


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (``-1`` for dynamic dims), numpy dtype and quantisation (scale 0 = not quantised)."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: float = 0.0
    zero_point: int = 0


def tflite_module() -> tuple[Any, str]:
    """The first TFLite interpreter module installed: ai_edge_litert, tflite_runtime, then TensorFlow."""
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
        pass
    try:
        import tensorflow as tf
        return tf.lite, f"tensorflow.lite {tf.__version__}"
    except ImportError:
        raise EdgeclfError("no TFLite runtime installed: pip install ai-edge-litert "
                           "(or tflite-runtime on older Raspberry Pi OS)") from None


class TFLiteBackend:
    """A TFLite interpreter on CPU (XNNPACK), the Edge TPU delegate, or the TFLite GPU delegate."""

    format = "tflite"

    def __init__(self, path: Path, device: str, num_threads: int | None) -> None:
        from .tflite_format import inspect_tflite, read_model_bytes
        self.path = path
        data = read_model_bytes(path)
        info = inspect_tflite(path, data)
        self.sealed = verify_sealed(data, str(path))
        self.metadata_json = info.metadata.get(METADATA_KEY)
        standard = info.metadata.get(METADATA_NAME) if self.metadata_json is None else None
        self.standard_metadata = read_standard_metadata(data, standard, str(path)) if standard else None
        self.output_kind: str | None = "probabilities" if info.softmax_output else "logits"
        compiled = EDGETPU_OP in info.custom_ops
        if device == "coral" and not compiled:
            raise InvalidModelError(f"{path}: not compiled for the Edge TPU; run 'edgeclf convert --to edgetpu' "
                                    "and use the *_edgetpu.tflite file")
        if compiled and device != "coral":
            raise InvalidModelError(f"{path}: compiled for the Edge TPU; run it with device='coral' "
                                    "(or use the plain int8 .tflite on the CPU)")
        if device == "jetson":
            raise DeviceUnavailableError(f"{path}: TFLite has no Jetson path; convert to ONNX and run the .onnx "
                                         "with device='jetson' (ONNX Runtime TensorRT provider)")
        module, self.name = tflite_module()
        delegates, self.delegate = self._delegates(module, device)
        try:
            self.interpreter = module.Interpreter(model_path=str(path), num_threads=num_threads,
                                                  experimental_delegates=delegates or None)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise InvalidModelError(f"{path}: the TFLite interpreter rejected the model: "
                                    f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}") from None
        self.name += f" ({self.delegate})"
        self._in = [d["index"] for d in self.interpreter.get_input_details()]
        self._out = [d["index"] for d in self.interpreter.get_output_details()]
        self.inputs = [self._spec(d) for d in self.interpreter.get_input_details()]
        self.outputs = [self._spec(d) for d in self.interpreter.get_output_details()]
        self._batch = self.inputs[0].shape[0]

    @staticmethod
    def _delegates(module: Any, device: str) -> tuple[list[Any], str]:
        if device == "cpu":
            return [], "XNNPACK"
        lib = EDGETPU_LIB.get(platform.system(), EDGETPU_LIB["Linux"]) if device == "coral" else TFLITE_GPU_LIB
        tpu = os.environ.get("EDGECLF_EDGETPU_DEVICE")  # e.g. "usb", "pci:0", as pycoral's make_interpreter
        options = {"device": tpu} if device == "coral" and tpu else {}
        try:
            return [module.load_delegate(lib, options)], f"{device} delegate {lib}"
        except (ValueError, OSError, RuntimeError) as exc:
            hint = INSTALL_HINT["coral"] if device == "coral" else (
                f"the TFLite GPU delegate ({lib}) is not installed; {INSTALL_HINT['gpu']}")
            raise DeviceUnavailableError(f"device '{device}' unavailable ({str(exc).strip() or lib}): {hint}") from None

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

    def _invoke(self, x: np.ndarray | None = None) -> list[np.ndarray]:
        """Set ``x`` as the input (unless it is already in place), invoke, and return the outputs."""
        try:
            if x is not None:
                self.interpreter.set_tensor(self._in[0], x)
            self.interpreter.invoke()
        except (RuntimeError, ValueError) as exc:
            raise InvalidModelError(f"{self.path}: inference failed: {str(exc).strip()[:300]}") from None
        return [self.interpreter.get_tensor(i) for i in self._out]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Run one input tensor; a batch size other than the model's resizes the input first."""
        self._batch_of(x.shape)
        return self._invoke(x)

    def run_into(self, fill: Callable[[np.ndarray], None], shape: Sequence[int]) -> list[np.ndarray]:
        """Run one image that ``fill`` writes straight into the interpreter's input tensor (as pycoral's
        ``set_input`` does): no input copy. The buffer view is dropped before ``invoke``, as TFLite requires."""
        self._batch_of(shape)
        fill(self.interpreter.tensor(self._in[0])()[0])
        return self._invoke()


def onnx_providers(device: str, available: list[str], cache_dir: str | None = None) -> list[Any]:
    """ONNX Runtime providers for ``device`` given what the installed ORT offers; raises when absent."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "coral":
        raise DeviceUnavailableError("device 'coral' runs Edge TPU-compiled .tflite files, not ONNX; "
                                     "run 'edgeclf convert --to edgetpu'")
    if device == "gpu":
        if "CUDAExecutionProvider" not in available:
            raise DeviceUnavailableError(f"device 'gpu' unavailable: ONNX Runtime offers {available}; {INSTALL_HINT['gpu']}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "jetson":
        chosen: list[Any] = []
        if "TensorrtExecutionProvider" in available:
            cache = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "edgeclf", "trt")
            chosen.append(("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                                         "trt_engine_cache_path": cache,
                                                         "trt_fp16_enable": True}))
        if "CUDAExecutionProvider" in available:
            chosen.append("CUDAExecutionProvider")
        if not chosen:
            raise DeviceUnavailableError(f"device 'jetson' unavailable: ONNX Runtime offers {available}; "
                                         f"{INSTALL_HINT['jetson']}")
        return chosen + ["CPUExecutionProvider"]
    raise DeviceUnavailableError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")


def onnx_session(path: str | os.PathLike, providers: list[Any], num_threads: int | None) -> Any:
    """An ``onnxruntime.InferenceSession`` whose load errors become ``InvalidModelError`` naming the file."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise EdgeclfError("running .onnx files needs onnxruntime: pip install 'edgeclf[onnx]'") from None
    so = ort.SessionOptions()
    if num_threads:
        so.intra_op_num_threads = num_threads
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), so, providers=providers)
    except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InvalidModelError(f"{path}: ONNX Runtime could not load the model: {first[:300]}") from None


class OnnxBackend:
    """An ONNX Runtime session on the CPU, CUDA, or TensorRT (Jetson) execution provider."""

    format = "onnx"
    _ORT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8,
                   "tensor(int8)": np.int8, "tensor(double)": np.float64, "tensor(int32)": np.int32,
                   "tensor(int64)": np.int64}

    def __init__(self, path: Path, device: str, num_threads: int | None) -> None:
        from .onnx_format import check_onnx_bytes
        self.path = path
        check_onnx_bytes(path)
        self.sealed = verify_sealed(path.read_bytes(), str(path))
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgeclfError("running .onnx files needs onnxruntime: pip install 'edgeclf[onnx]'") from None
        providers = onnx_providers(device, ort.get_available_providers())
        self.session = onnx_session(path, providers, num_threads)
        used = self.session.get_providers()
        if device != "cpu" and used[0] == "CPUExecutionProvider":
            raise DeviceUnavailableError(f"device '{device}' unavailable: ONNX Runtime fell back to the CPU "
                                         f"(CUDA/TensorRT libraries missing?); {INSTALL_HINT[device]}")
        self.name = f"onnxruntime {ort.__version__} ({used[0]})"
        try:
            self.metadata_json = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
            self.inputs = [self._spec(a) for a in self.session.get_inputs()]
            self.outputs = [self._spec(a) for a in self.session.get_outputs()]
        except UnicodeDecodeError:
            raise InvalidModelError(f"{path}: corrupt ONNX model (names or metadata are not UTF-8)") from None
        self.standard_metadata = None  # the TFLite metadata standard has no ONNX counterpart
        self.output_kind: str | None = None  # ORT does not show the graph: decided from the first outputs
        self._in_name = self.inputs[0].name
        self._out_names = [o.name for o in self.outputs]

    @classmethod
    def _spec(cls, arg: Any) -> TensorSpec:
        shape = tuple(d if isinstance(d, int) and d > 0 else -1 for d in arg.shape)
        return TensorSpec(arg.name, shape, np.dtype(cls._ORT_DTYPES.get(arg.type, np.float32)))

    def run_into(self, fill: Callable[[np.ndarray], None], shape: Sequence[int]) -> list[np.ndarray]:
        """Run one image that ``fill`` writes into a fresh input tensor of ``shape``."""
        x = np.empty(shape, self.inputs[0].dtype)
        fill(x[0])
        return self.run(x)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            return self.session.run(self._out_names, {self._in_name: x})
        except Exception as exc:  # onnxruntime's Fail/RuntimeException types
            raise InvalidModelError(f"{self.path}: inference failed: {str(exc).strip()[:300]}") from None


BACKENDS = {".tflite": TFLiteBackend, ".onnx": OnnxBackend}


def open_backend(path: str | os.PathLike, device: str = "cpu", num_threads: int | None = None) -> Any:
    """Open ``path`` with the engine its suffix calls for, on ``device``."""
    p = Path(path)
    if device not in DEVICES:
        raise DeviceUnavailableError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if not p.exists():
        raise ModelNotFoundError(f"{p}: no such file")
    if num_threads is not None and num_threads < 1:
        raise EdgeclfError(f"num_threads must be >= 1, got {num_threads}")
    cls = BACKENDS.get(p.suffix.lower())
    if cls is None:
        raise InvalidModelError(f"{p}: unsupported model format {p.suffix or '(no suffix)'}; "
                                f"expected one of {', '.join(BACKENDS)}")
    return cls(p, device, num_threads)
