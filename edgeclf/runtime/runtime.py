"""``Runtime``: classify images with a .tflite or .onnx file on a device, without TensorFlow.

The file's own edgeclf metadata supplies labels and preprocessing; constructor arguments override it,
so a model made elsewhere works too. ``predict`` = ``resized`` (crop, letterbox or stretch to the input size) ->
``probabilities_resized`` (colour, normalise and quantise straight into the engine's input buffer, invoke,
dequantise, softmax) -> top-k.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edgeclf.artifact.files import read_model_bytes
from edgeclf.artifact.formats import format_of
from edgeclf.artifact.metadata import METADATA_KEY, Metadata, Preprocess, read_labels
from edgeclf.artifact.seal import parse_embedded, verify_sealed
from edgeclf.artifact.tflite_standard import METADATA_NAME, StandardMetadata, read_standard_metadata
from edgeclf.errors import EdgeclfError, ImageError, InvalidModelError
from edgeclf.runtime.backends import open_backend
from edgeclf.runtime.deploy import read_deploy
from edgeclf.runtime.engine import TensorSpec
from edgeclf.runtime.images import load_image
from edgeclf.runtime.outputs import looks_like_probabilities, softmax
from edgeclf.runtime.preprocess import InputEncoder, resize_geometry, to_bgr, to_model_colour


@dataclass(frozen=True)
class Prediction:
    """One class of a result: its index in the model's output, its label and its probability."""

    index: int
    label: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form every command, endpoint and sink writes."""
        return {"index": self.index, "label": self.label, "score": round(self.score, 6)}


def _layout_and_size(spec: TensorSpec) -> tuple[str | None, tuple[int, int] | None]:
    """Guess NHWC/NCHW and (h, w) from a 4-D input shape; None where the shape does not tell."""
    if len(spec.shape) != 4:
        return None, None
    _, a, b, c = spec.shape
    if c in (1, 3) and a not in (1, 3):
        layout, hw = "NHWC", (a, b)
    elif a in (1, 3) and c not in (1, 3):
        layout, hw = "NCHW", (b, c)
    else:
        layout, hw = "NHWC", (a, b)
    return layout, (hw if min(hw) > 0 else None)


class Runtime:
    """Run an image classifier file (``.tflite`` or ``.onnx``) on ``device`` (cpu, gpu, coral, jetson).

    ``backend`` picks the engine: ``auto`` (LiteRT for ``.tflite``, ONNX Runtime for ``.onnx``) or, for
    ``.onnx``, ``onnxruntime`` or ``openvino`` (the ``[openvino]`` extra).
    Arguments other than ``model``, ``device``, ``num_threads`` and ``backend`` override the file's metadata:
    ``labels`` (a list or a labels file), ``mean``/``std`` (one value or one per channel, applied to
    0..255 pixels), ``color`` (RGB/BGR/GRAY), ``resize`` (crop/letterbox/stretch), ``crop_ratio``,
    ``input_size`` ((h, w), for dynamic-shape models) and ``output`` (probabilities/logits/auto).
    Like the interpreter it owns, a Runtime serves one thread at a time (``predict`` writes into the
    interpreter's input buffer): use one per thread, or a lock as ``edgeclf serve`` does.
    """

    def __init__(self, model: str | os.PathLike, device: str = "cpu", num_threads: int | None = None, *,
                 labels: Sequence[str] | str | os.PathLike | None = None,
                 mean: float | Sequence[float] | None = None, std: float | Sequence[float] | None = None,
                 color: str | None = None, resize: str | None = None, crop_ratio: float | None = None,
                 input_size: tuple[int, int] | int | None = None, output: str | None = None,
                 backend: str = "auto") -> None:
        self.path = Path(model)
        self.device = device
        self.num_threads = num_threads
        data = read_model_bytes(self.path)
        self.format: str = format_of(self.path).container
        sealed = verify_sealed(data, str(self.path))  # from the raw bytes, before any parser sees them
        self._engine = open_backend(self.format, data, str(self.path), device, num_threads, backend)
        self.backend: str = self._engine.name
        meta = parse_embedded(self._engine.records.get(METADATA_KEY), str(self.path), sealed)
        self.standard_metadata = self._standard_metadata(data, meta)
        self.input_spec: TensorSpec = self._engine.inputs[0]
        self.output_spec: TensorSpec = self._engine.outputs[0]
        if len(self.input_spec.shape) != 4:
            raise InvalidModelError(f"{self.path}: not an image classifier: input shape {self.input_spec.shape} is not 4-D")
        layout, size = _layout_and_size(self.input_spec)
        standard = self.standard_metadata
        spec = self.input_spec
        pre_changes: dict[str, Any] = standard.preprocess_for(spec.dtype, spec.scale, spec.zero_point) if standard else {}
        pre_changes.update({k: v for k, v in dict(mean=mean, std=std, color=color, resize=resize,
                                                  crop_ratio=crop_ratio).items() if v is not None})
        if input_size is not None:
            pre_changes["input_size"] = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        elif size is not None:
            pre_changes["input_size"] = size
        elif meta is None:
            raise InvalidModelError(f"{self.path}: the input size is dynamic and the file has no edgeclf metadata; "
                                    "pass input_size=(h, w) (--input-size HxW)")
        if meta is None:
            pre_changes["layout"] = layout
        base = meta if meta is not None else Metadata(source=str(self.path), labels=standard.labels if standard else [])
        try:
            self.metadata: Metadata = base.replace(preprocess=pre_changes,
                                                   **({"output": output} if output else {}))
        except ValueError as exc:
            raise EdgeclfError(f"{self.path}: {exc}") from None
        self._output_kind: str | None = (self.metadata.output if self.metadata.output != "auto"
                                         else self._engine.output_kind)
        out = self.output_spec
        self._dequantise: np.ndarray | None = None
        if out.scale and out.dtype.itemsize == 1:  # 8-bit output: each code's float value, looked up in scores()
            codes = np.arange(256, dtype=np.uint8).view(out.dtype).astype(np.float64)
            self._dequantise = ((codes - out.zero_point) * out.scale).astype(np.float32)
        self.num_classes = int(np.prod([d for d in self.output_spec.shape[1:] if d > 0] or [0]))
        self.labels = self._labels(labels, base.labels)
        self.metadata.labels = self.labels
        self.preprocess_spec: Preprocess = self.metadata.preprocess
        self.input_size: tuple[int, int] = self.preprocess_spec.input_size
        self.input_dtype = self.input_spec.dtype
        self._encode = InputEncoder(self.preprocess_spec, self.input_dtype, self.input_spec.scale,
                                    self.input_spec.zero_point)
        c = self.preprocess_spec.channels
        h, w = self.input_size
        self._in_shape = (1, h, w, c) if self.preprocess_spec.layout == "NHWC" else (1, c, h, w)
        self._check_input_shape()

    @classmethod
    def from_deploy(cls, path: str | os.PathLike, **overrides: Any) -> "Runtime":
        """The Runtime a deploy.json (``edgeclf bench --pick``) names: its file, backend, device and threads."""
        run = read_deploy(path)
        kwargs = {**run["options"], "device": run["device"], "num_threads": run["threads"], "backend": run["backend"],
                  **overrides}
        return cls(run["model"], **kwargs)

    def _standard_metadata(self, data: bytes, meta: Metadata | None) -> StandardMetadata | None:
        """TFLite's own metadata of a model made elsewhere (labels, normalisation, colour); the edgeclf record wins."""
        raw = self._engine.records.get(METADATA_NAME)
        if meta is not None or not isinstance(raw, bytes):
            return None
        return read_standard_metadata(data, raw, str(self.path))

    def _labels(self, given: Sequence[str] | str | os.PathLike | None, stored: list[str]) -> list[str]:
        if isinstance(given, (str, os.PathLike)):
            labels = read_labels(given)
        elif given is not None:
            labels = [str(x) for x in given]
        else:
            labels = list(stored)
        if not labels:
            return [str(i) for i in range(self.num_classes)]
        if self.num_classes and len(labels) != self.num_classes:
            raise InvalidModelError(f"{self.path}: {len(labels)} labels given but the model outputs "
                                    f"{self.num_classes} classes")
        return labels

    def _check_input_shape(self) -> None:
        model = self.input_spec.shape
        for want, have in zip(self._in_shape[1:], model[1:]):
            if have > 0 and want != have:
                raise InvalidModelError(f"{self.path}: preprocessing gives input {self._in_shape} but the model "
                                        f"expects {model} (check input_size/color/layout)")

    # -- the data path ------------------------------------------------------------------------------
    def resized(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """Image (BGR uint8 array or a path) -> BGR uint8 pixels at the input size (crop / letterbox / stretch)."""
        img = load_image(image) if isinstance(image, (str, os.PathLike)) else image
        return resize_geometry(to_bgr(img), self.preprocess_spec)

    def preprocess(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """Image (BGR uint8 array or a path) -> batch-of-one input tensor of the model's dtype."""
        return self._encode(to_model_colour(self.resized(image), self.preprocess_spec.color))  # no shared buffer

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """Raw outputs for an already-preprocessed tensor of the input's dtype and shape."""
        if tensor.dtype != self.input_dtype:
            raise ImageError(f"infer() needs a {self.input_dtype} tensor, got {tensor.dtype}")
        if tensor.shape[1:] != self._in_shape[1:]:
            raise ImageError(f"infer() needs shape (N, {', '.join(map(str, self._in_shape[1:]))}), got {tensor.shape}")
        return self._engine.run(tensor)

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """Dequantise a raw output and make it probabilities (softmax unless it already is one)."""
        out = raw.reshape(raw.shape[0], -1)
        if out.shape[1] != len(self.labels):
            raise InvalidModelError(f"{self.path}: the model produced {out.shape[1]} scores per image but has "
                                    f"{len(self.labels)} labels (output shape {raw.shape})")
        spec = self.output_spec
        if self._dequantise is not None:  # 8-bit output: one table lookup
            out = self._dequantise[out.view(np.uint8)]
        elif spec.scale:
            out = (out.astype(np.float32) - spec.zero_point) * spec.scale
        else:
            out = out.astype(np.float32, copy=False)
        if self._output_kind is None:  # decided once, so one model never mixes the two readings
            self._output_kind = "probabilities" if looks_like_probabilities(out, spec.scale) else "logits"
        return softmax(out) if self._output_kind == "logits" else out

    def probabilities(self, image: np.ndarray | str | os.PathLike) -> np.ndarray:
        """The full probability vector for one image."""
        return self.probabilities_resized(self.resized(image))

    def probabilities_resized(self, image_bgr: np.ndarray) -> np.ndarray:
        """The probability vector for a BGR image already at the input size: colour, normalisation and input
        quantisation written straight into the engine's input buffer, then invoke, dequantise, softmax."""
        self._encode.encode_bgr_into(image_bgr, self._engine.input_buffer(self._in_shape))
        return self.scores(self._engine.invoke()[0])[0]

    def predict(self, image: np.ndarray | str | os.PathLike, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` most probable classes for one image, best first."""
        return self.top(self.probabilities(image), top_k)

    def predict_batch(self, images: Sequence[np.ndarray | str | os.PathLike], top_k: int = 5) -> list[list[Prediction]]:
        """``predict`` for several images (batched in one call when the model's batch size is dynamic)."""
        if not images:
            return []
        if self.input_spec.shape[0] == -1 and len(images) > 1:
            probs = self.scores(self.infer(np.concatenate([self.preprocess(i) for i in images]))[0])
        else:
            probs = np.stack([self.probabilities(i) for i in images])
        return [self.top(p, top_k) for p in probs]

    def top(self, probs: np.ndarray, top_k: int = 5) -> list[Prediction]:
        """The ``top_k`` entries of a probability vector as ``Prediction``s, best first."""
        k = max(1, min(int(top_k), probs.shape[0]))
        # one stable sort: ties go to the lower index (a quantised output ties often), a few us for 1000 classes
        idx = np.argsort(-probs, kind="stable")[:k].tolist()
        return [Prediction(i, self.labels[i], float(probs[i])) for i in idx]

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: file, backend, device, tensors and the effective metadata."""
        def spec(s: TensorSpec) -> dict[str, Any]:
            d = dataclasses.asdict(s)
            d["dtype"] = str(s.dtype)
            return d
        return {"model": str(self.path), "format": self.format, "size_bytes": self.path.stat().st_size,
                "backend": self.backend, "device": self.device,
                "inputs": [spec(s) for s in self._engine.inputs], "outputs": [spec(s) for s in self._engine.outputs],
                "metadata": self.metadata.to_dict(), "has_edgeclf_metadata": METADATA_KEY in self._engine.records,
                "has_tflite_metadata": METADATA_NAME in self._engine.records}

    def __repr__(self) -> str:
        return (f"Runtime({str(self.path)!r}, device={self.device!r}, backend={self.backend!r}, "
                f"input={self.input_size}, classes={len(self.labels)})")
