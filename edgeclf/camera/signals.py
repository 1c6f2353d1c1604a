"""SIGINT/SIGTERM as a clean shutdown: the first signal asks to stop, a second one insists."""
from __future__ import annotations

import contextlib
import signal
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def on_stop_signals(first: Callable[[], None], second: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first SIGINT/SIGTERM calls ``first`` and any later one ``second``; the previous
    handlers come back on exit. The camera loop and the web server both stop through this."""
    received = []

    def handler(signum: int, _frame: Any) -> None:
        received.append(signum)
        (first if len(received) == 1 else second)()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
