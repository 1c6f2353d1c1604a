"""The listening socket and the HTTP connection rules: a header deadline, a connection cap, JSON refusals.

uvicorn has an idle keep-alive timeout but no deadline for the request head, so a client sending its
headers a byte at a time (slowloris) would hold its connection for ever. ``GuardedH11Protocol`` closes a
connection whose request head is not complete ``header_timeout`` seconds after it opened (or after its previous
response), and refuses connections over ``max_connections`` at once, so slow clients cannot use up the
file descriptors or the event loop.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from edgeclf.camera.signals import on_stop_signals

HEADER_TIMEOUT_S = 10.0      # the whole request head (request line and headers)
KEEP_ALIVE_S = 5.0           # an idle connection between requests
MAX_HEAD_BYTES = 16 * 1024   # request line and headers together
FD_RESERVE = 64             # descriptors kept for files, pipes, the camera and the decoder workers
STATUS_TEXT = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


def refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response refusing a connection: JSON ``{"error": message}``, then close."""
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {STATUS_TEXT[status]}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a request-head deadline, a connection cap and JSON refusals."""

    max_connections = 1000
    header_timeout = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self._refuse(503, f"too many open connections (limit {self.max_connections}); try again shortly")
            return
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        self._refuse(400, f"malformed HTTP request ({msg.rstrip('.')})")

    def _arm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_deadline)

    def _head_deadline(self) -> None:
        """Close the connection if it is still waiting for a request head (idle or half-sent)."""
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._refuse(408, f"request headers not received within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self.transport.write(refusal(status, message))
        self.transport.close()


def connection_budget(wanted: int) -> int:
    """How many connections the descriptor limit allows (raising the soft limit towards ``wanted`` if it may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = wanted + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return wanted if soft == resource.RLIM_INFINITY else max(1, min(wanted, soft - FD_RESERVE))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(addr)
    sock.listen(1024)
    return sock


def run(app: Any, sock: socket.socket, max_connections: int, header_timeout: float = HEADER_TIMEOUT_S) -> None:
    """Serve ``app`` on ``sock`` until SIGINT/SIGTERM, then exit normally (open streams get 2 s to finish)."""

    class Server(uvicorn.Server):
        def capture_signals(self) -> contextlib.AbstractContextManager[None]:
            """Stop on SIGINT/SIGTERM, at once on a second one (uvicorn's own re-raises them after shutdown)."""
            def stop() -> None:
                self.should_exit = True

            def force() -> None:
                self.force_exit = True

            return on_stop_signals(stop, force)

    protocol = type("Protocol", (GuardedH11Protocol,), {"max_connections": max_connections,
                                                        "header_timeout": header_timeout})
    config = uvicorn.Config(app, http=protocol, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=2, timeout_keep_alive=int(KEEP_ALIVE_S),
                            h11_max_incomplete_event_size=MAX_HEAD_BYTES)
    Server(config).run(sockets=[sock])
