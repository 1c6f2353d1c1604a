"""Vet a Keras model file's config before loading it: refuse anything whose code would run on load.

Loading a Keras model rebuilds every object its config names. A ``Lambda`` layer carries marshalled bytecode
(or a module path) that runs as the model is rebuilt; the ``.keras`` format imports whatever ``module`` an
object names; and a legacy HDF5 file (whatever its suffix) is loaded without tf-keras' ``safe_mode``. So
``load_model`` first reads the config the loader will read (``config.json`` of a zip ``.keras``, the
``model_config`` attribute of an HDF5 file) and accepts only built-in tf-keras, tfmot and edgeclf objects from
those packages' modules, and TensorFlow ops (``TFOpLambda``) from the maths, neural-network and image
namespaces.

A SavedModel folder is refused even when its Keras config (``keras_metadata.pb``) is clean: its TensorFlow
graphs, restore and initialiser functions among them, run on load and cannot be vetted here. Its config is
still read first, so a Lambda layer in it is named.
"""
from __future__ import annotations

import functools
import json
import zipfile
from pathlib import Path
from typing import Any, Iterator

from edgeclf.errors import InvalidModelError

UNSAFE_HINT = "pass --unsafe-load (API unsafe_load=True) only for files you trust"
SAFE_MODULES = frozenset({"keras", "tf_keras", "tensorflow_model_optimization", "edgeclf"})
# TFOpLambda names a TensorFlow function by its API path; these namespaces only compute on tensors
SAFE_TF_NAMESPACES = frozenset({"math", "nn", "image", "linalg", "signal", "bitwise", "__operators__"})
SAFE_TF_FUNCTIONS = frozenset({"reshape", "concat", "stack", "unstack", "transpose", "cast", "expand_dims", "squeeze",
                               "split", "gather", "pad", "tile", "clip_by_value", "where", "identity", "shape",
                               "ones_like", "zeros_like", "broadcast_to", "slice", "strided_slice", "fill", "range"})
# plain-data markers of the serialisers (tensors, arrays, bytes, tuples, shapes); "__lambda__" is code, not data
DATA_MARKERS = frozenset({"__tensor__", "__numpy__", "__bytes__", "__typespec__", "__tuple__", "TensorShape",
                          "TypeSpec", "__ellipsis__"})
MAX_CONFIG_BYTES = 64 << 20
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@functools.lru_cache(maxsize=1)
def known_objects() -> tuple[frozenset[str], frozenset[str]]:
    """Class names (layers, initialisers, tfmot wrappers, ...) and function names (activations, losses) a
    config may name: those tf-keras and tfmot export."""
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot

    spaces = [keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.losses, keras.metrics,
              keras.optimizers, keras.optimizers.schedules, keras.models, tfmot.sparsity.keras,
              tfmot.quantization.keras, tfmot.quantization.keras.quantizers]
    classes = {name for space in spaces for name, value in vars(space).items() if isinstance(value, type)}
    for objects in tfmot.quantization.keras.quantize_scope().custom_objects:
        classes.update(objects)
    classes.update({"Functional", "Sequential", "Model", "TFOpLambda", "SlicingOpLambda"} | DATA_MARKERS)
    classes.discard("Lambda")
    functions = {name for space in (keras.activations, keras.losses, keras.metrics)
                 for name, value in vars(space).items() if callable(value) and not isinstance(value, type)}
    return frozenset(classes), frozenset(functions)


def _objects(config: Any) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every serialised object (a dict with a ``class_name``) in ``config``, with the layer it belongs to."""
    stack: list[tuple[Any, str | None]] = [(config, None)]
    while stack:
        node, layer = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                layer = name if isinstance(name, str) else layer
                yield node, layer
            stack.extend((value, layer) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, layer) for value in node)


def _refusal(obj: dict[str, Any], known: frozenset[str], functions: frozenset[str]) -> str | None:
    """Why loading ``obj`` would run code from the file or from outside the allowed packages; None if it would not."""
    cls, module, inner = obj.get("class_name"), obj.get("module"), obj.get("config")
    if not isinstance(cls, str):
        return f"has a malformed class name {cls!r}"
    if cls in ("Lambda", "__lambda__"):
        return "is a Lambda layer, whose code would run on load"
    if module is not None and (not isinstance(module, str) or module.split(".")[0] not in SAFE_MODULES):
        return f"names module {module!r}, outside {', '.join(sorted(SAFE_MODULES))}, which would be imported on load"
    if cls == "function":  # the .keras format's reference to a function by name, e.g. an activation
        if not isinstance(inner, str) or inner not in functions:
            return f"names function {inner!r}, which is not a built-in Keras activation, loss or metric"
        return None
    if cls not in known:
        return f"is a {cls!r} object, which is not a built-in Keras, tfmot or edgeclf one; its code would run on load"
    if cls in ("TFOpLambda", "SlicingOpLambda"):
        fn = inner.get("function") if isinstance(inner, dict) else None
        if not isinstance(fn, str) or (fn.split(".")[0] not in SAFE_TF_NAMESPACES and fn not in SAFE_TF_FUNCTIONS):
            return f"calls TensorFlow function {fn!r}, outside the tensor maths this check allows"
    return None


def check_config(config: Any, source: str) -> None:
    """Raise ``InvalidModelError`` naming the first object of ``config`` whose loading would run foreign code."""
    known, functions = known_objects()
    for obj, layer in _objects(config):
        why = _refusal(obj, known, functions)
        if why is not None:
            where = f"layer {layer!r}" if layer is not None else "the model"
            raise InvalidModelError(f"{source}: {where} {why}; {UNSAFE_HINT}")


def _json(text: bytes | str, source: str, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidModelError(f"{source}: {what} is not valid JSON ({type(exc).__name__})") from None


def _zip_config(path: Path) -> Any:
    """``config.json`` of a zip ``.keras`` file."""
    try:
        with zipfile.ZipFile(path) as z:
            info = z.getinfo("config.json")
            if info.file_size > MAX_CONFIG_BYTES:
                raise InvalidModelError(f"{path}: config.json is {info.file_size} bytes, more than a model needs")
            text = z.read(info)
    except InvalidModelError:
        raise
    except KeyError:
        raise InvalidModelError(f"{path}: not a Keras model: the zip has no config.json") from None
    except Exception as exc:  # zipfile and zlib raise many types for a corrupt archive
        raise InvalidModelError(f"{path}: corrupt .keras archive ({type(exc).__name__})") from None
    return _json(text, str(path), "config.json")


def _hdf5_config(path: Path) -> Any:
    """The ``model_config`` attribute of a legacy HDF5 model file."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except Exception as exc:  # h5py raises many types for a corrupt file
        raise InvalidModelError(f"{path}: corrupt HDF5 file ({type(exc).__name__})") from None
    if not isinstance(raw, (bytes, str)):
        raise InvalidModelError(f"{path}: HDF5 file has no Keras model config (only weights?)")
    return _json(raw, str(path), "its model_config")


def _saved_model_config(folder: Path) -> list[Any]:
    """The objects a tf-keras SavedModel's ``keras_metadata.pb`` describes (empty when it has none)."""
    from google.protobuf.message import DecodeError
    from tf_keras.protobuf.saved_metadata_pb2 import SavedMetadata

    pb = folder / "keras_metadata.pb"
    if not pb.is_file():
        return []
    meta = SavedMetadata()
    try:
        meta.ParseFromString(pb.read_bytes())
    except DecodeError:
        raise InvalidModelError(f"{pb}: corrupt Keras metadata") from None
    return [_json(node.metadata, str(pb), "a node's metadata") for node in meta.nodes]


def is_hdf5(path: Path) -> bool:
    """Whether the file starts with the HDF5 signature (at 0 or, after a user block, at 512, 1024, 2048, ...)."""
    with open(path, "rb") as fh:
        offset = 0
        while True:
            fh.seek(offset)
            head = fh.read(8)
            if head == HDF5_MAGIC:
                return True
            if len(head) < 8:
                return False
            offset = 512 if offset == 0 else offset * 2


def read_config(path: Path) -> Any:
    """The config tf-keras' ``load_model`` would read from a model file, found as it finds it: a zip whose name
    ends in ``.keras``, else HDF5 whatever the suffix."""
    if str(path).endswith(".keras") and zipfile.is_zipfile(path):
        return _zip_config(path)
    if is_hdf5(path):
        return _hdf5_config(path)
    raise InvalidModelError(f"{path}: not a Keras model: neither a zip .keras archive nor an HDF5 file")


def check_model_file(path: Path) -> None:
    """Vet a model file's or SavedModel folder's config before loading it (a SavedModel is refused: module doc)."""
    if path.is_dir():
        check_config(_saved_model_config(path), str(path))
        raise InvalidModelError(f"{path}: a SavedModel's TensorFlow graphs run on load and cannot be vetted; "
                                f"re-save it as .keras where it was made, or {UNSAFE_HINT}")
    check_config(read_config(path), str(path))
