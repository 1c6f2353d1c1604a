"""Counters, gauges and histograms for ``edgeclf serve``, rendered in the Prometheus text format (0.0.4).

Thread-safe: the camera thread and the request handlers update them concurrently.
"""
from __future__ import annotations

import bisect
import threading
from typing import Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # seconds

Labels = tuple[tuple[str, str], ...]


def _labels(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in labels] + ([extra] if extra else [])
    return "{" + ",".join(parts) + "}" if parts else ""


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class _Histogram:
    def __init__(self, buckets: Iterable[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: Labels) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts):
            running += count
            le = 'le="+Inf"' if bound == float("inf") else f'le="{bound!r}"'
            out.append(f"{name}_bucket{_labels(labels, le)} {running}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {running}")
        return out


class Metrics:
    """A small registry: declare each metric once (``counter``/``gauge``/``histogram``), then update by name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, tuple[str, str]] = {}
        self._values: dict[str, dict[Labels, float | _Histogram]] = {}

    def _declare(self, name: str, kind: str, help_text: str, labelled: bool) -> None:
        self._meta[name] = (kind, help_text)
        self._values[name] = {} if labelled or kind == "histogram" else {(): 0.0}

    def counter(self, name: str, help_text: str, labelled: bool = False) -> None:
        """Declare a counter; an unlabelled one is exported as 0 until first incremented."""
        self._declare(name, "counter", help_text, labelled)

    def gauge(self, name: str, help_text: str, labelled: bool = False) -> None:
        self._declare(name, "gauge", help_text, labelled)

    def histogram(self, name: str, help_text: str) -> None:
        self._declare(name, "histogram", help_text, True)

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            series[key] = series.get(key, 0.0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        with self._lock:
            self._values[name][tuple(sorted(labels.items()))] = float(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._values[name]
            hist = series.get(key)
            if hist is None:
                hist = series[key] = _Histogram(LATENCY_BUCKETS)
            hist.observe(value)

    def value(self, name: str, **labels: str) -> float:
        """The current value of a counter or gauge series (0 when never set)."""
        with self._lock:
            return float(self._values[name].get(tuple(sorted(labels.items())), 0.0))  # type: ignore[arg-type]

    def render(self) -> str:
        """Every metric in the Prometheus text exposition format."""
        lines: list[str] = []
        with self._lock:
            for name, (kind, help_text) in self._meta.items():
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                for labels, v in sorted(self._values[name].items()):
                    if isinstance(v, _Histogram):
                        lines += v.lines(name, labels)
                    else:
                        lines.append(f"{name}{_labels(labels)} {_number(v)}")
        return "\n".join(lines) + "\n"


def serve_metrics() -> Metrics:
    """The metrics ``edgeclf serve`` exports."""
    m = Metrics()
    m.counter("edgeclf_frames_total", "Camera frames classified.")
    m.counter("edgeclf_frames_dropped_total", "Stale camera frames dropped to stay current.")
    m.counter("edgeclf_predictions_total", "Uploaded images classified.")
    m.histogram("edgeclf_inference_seconds", "Preprocessing plus model time per image.")
    m.counter("edgeclf_errors_total", "Errors by kind (rejected requests, camera failures).", labelled=True)
    m.counter("edgeclf_samples_saved_total", "Labelled samples saved from feedback.")
    m.gauge("edgeclf_camera_fps", "Camera results per second.")
    m.gauge("edgeclf_stream_clients", "Open MJPEG stream connections.")
    return m
