"""The two measurements of ``bench --pick``, each run by ``edgeclf.benchmark.worker`` in a process of its own.

``quality``: one file on one backend and device, its probabilities on the check images saved as float32 .npy
where the job says (and accuracy and each image's class on class folders); threads do not change them, so it
runs once per (file, backend, device). ``latency``: every candidate that loaded, timed side by side by
``alternate`` (file x backend x device x threads).
``python -m edgeclf.benchmark.pick_worker JOB.json`` runs the job's ``kind``.
"""
from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np

from edgeclf.benchmark.alternate import alternate, summary
from edgeclf.benchmark.worker import accuracy_figures, labelled_probabilities, main, quantization
from edgeclf.errors import DeviceUnavailableError, EdgeclfError
from edgeclf.runtime import Runtime

SYNTHETIC_IMAGES = 64


def _open(job: dict[str, Any], threads: int | None) -> Runtime:
    return Runtime(job["model"], device=job["device"], num_threads=threads, backend=job["backend"], **job["runtime"])


def synthetic_frames(n: int = SYNTHETIC_IMAGES, seed: int = 0) -> list[np.ndarray]:
    """Seeded blurred-noise BGR frames: check images when none are given (the same in every process)."""
    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), (0, 0), 1 + i % 4)
            for i in range(n)]


def _failure(exc: EdgeclfError) -> dict[str, Any]:
    return {"status": f"{'unavailable' if isinstance(exc, DeviceUnavailableError) else 'failed'}: {exc}"}


def quality(job: dict[str, Any]) -> dict[str, Any]:
    """Load one (file, backend, device) and save its probabilities on the check images to ``job["probabilities"]``
    (an .npy: a 1000-class model's answers are too big for the JSON result); with class folders, also the
    accuracy and each image's class (``truth``)."""
    try:
        rt = _open(job, None)
        out: dict[str, Any] = {"status": "passed", "engine": rt.backend, "quant": quantization(rt)}
        if job.get("data"):
            probs, truth = labelled_probabilities(rt, job["data"], job["model"])
            out.update(accuracy_figures(probs, truth, rt.labels), truth=truth.tolist())
        else:
            probs = np.stack([rt.probabilities(im) for im in job.get("samples") or synthetic_frames()])
        np.save(job["probabilities"], probs.astype(np.float32))
        return out
    except EdgeclfError as exc:
        return _failure(exc)


def latency(job: dict[str, Any]) -> dict[str, Any]:
    """Median latency of ``Runtime.infer`` per candidate, all timed in alternating blocks in this process."""
    loops, results = {}, []
    frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    for i, cand in enumerate(job["candidates"]):
        try:
            rt = _open({**job, **cand}, cand["threads"])
            x = rt.preprocess(frame)
            loops[str(i)] = (lambda rt=rt, x=x: rt.infer(x))
            results.append({"status": "passed"})
        except EdgeclfError as exc:
            results.append(_failure(exc))
    times = alternate(loops, job["rounds"], job["per_round"], job["warmup"], job["max_secs"]) if loops else {}
    for key, ms in times.items():
        results[int(key)].update({"latency_ms": summary(ms), "runs": len(ms)})
    return {"status": "passed", "results": results}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], lambda job: {"quality": quality, "latency": latency}[job["kind"]](job)))
