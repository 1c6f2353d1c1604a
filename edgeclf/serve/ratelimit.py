"""A token bucket per client address: each client may send ``burst`` requests at once, then ``rate`` a second."""
from __future__ import annotations

import math
import threading
import time

MAX_CLIENTS = 10_000   # buckets kept; full ones are forgotten first (a full bucket is the same as none)


class RateLimiter:
    """``take(client)`` spends one token, or says how many seconds until the next one."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}   # client -> (tokens, when)
        self._lock = threading.Lock()

    def take(self, client: str, now: float | None = None) -> float:
        """0 when ``client`` may go ahead (a token is spent), else the seconds to wait for a token."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, when = self._buckets.get(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - when) * self.rate)
            if tokens < 1:
                self._buckets[client] = (tokens, now)
                return (1 - tokens) / self.rate
            self._buckets[client] = (tokens - 1, now)
            if len(self._buckets) > MAX_CLIENTS:
                self._forget_full(now)
            return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled; if none has, the oldest half (a flood of addresses)."""
        full = [c for c, (t, w) in self._buckets.items() if t + (now - w) * self.rate >= self.burst]
        for client in full or sorted(self._buckets, key=lambda c: self._buckets[c][1])[:len(self._buckets) // 2]:
            del self._buckets[client]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
