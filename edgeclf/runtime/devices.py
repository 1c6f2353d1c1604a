"""Devices and what runs on them: TFLite delegates and ONNX Runtime execution providers.

A device that is not present raises ``DeviceUnavailableError`` saying what to install; nothing here ever
falls back to the CPU under another device's name.
"""
from __future__ import annotations

import os
import platform
from typing import Any

from edgeclf.errors import DeviceUnavailableError

DEVICES = ("cpu", "gpu", "coral", "jetson")
EDGETPU_LIB = {"Linux": "libedgetpu.so.1", "Darwin": "libedgetpu.1.dylib", "Windows": "edgetpu.dll"}
TFLITE_GPU_LIB = "libtensorflowlite_gpu_delegate.so"
INSTALL_HINT = {
    "coral": "install the Edge TPU runtime (Coral's apt repository: sudo apt-get install libedgetpu1-std) "
             "and plug in the accelerator",
    "gpu": "install onnxruntime-gpu with CUDA and cuDNN (pip install onnxruntime-gpu) and use the .onnx file",
    "jetson": "install NVIDIA's onnxruntime-gpu wheel for JetPack (with TensorRT) and use the .onnx file",
}


def check_device(device: str) -> str:
    """``device`` when it is one edgeclf knows; a one-line error listing them otherwise."""
    if device not in DEVICES:
        raise DeviceUnavailableError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    return device


def tflite_delegates(module: Any, device: str) -> tuple[list[Any], str]:
    """The delegates that put a TFLite interpreter on ``device`` and a name for them (cpu: none, XNNPACK)."""
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


def onnx_providers(device: str, available: list[str], cache_dir: str | None = None) -> list[Any]:
    """ONNX Runtime providers for ``device`` given what the installed ORT offers; raises when absent."""
    if check_device(device) == "cpu":
        return ["CPUExecutionProvider"]
    if device == "coral":
        raise DeviceUnavailableError("device 'coral' runs Edge TPU-compiled .tflite files, not ONNX; "
                                     "run 'edgeclf convert --to edgetpu'")
    if device == "gpu":
        if "CUDAExecutionProvider" not in available:
            raise DeviceUnavailableError(f"device 'gpu' unavailable: ONNX Runtime offers {available}; {INSTALL_HINT['gpu']}")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    chosen: list[Any] = []  # jetson: TensorRT (with an engine cache), then CUDA
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
