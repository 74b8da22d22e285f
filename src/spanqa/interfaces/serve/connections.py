"""Connection guard: uvicorn's HTTP protocol with a header deadline and a cap on open connections.

uvicorn closes a keep-alive connection that stays silent after a response, but a connection that
sends nothing after connecting, or trickles header lines (each byte cancels the keep-alive timer),
stays open for ever; and its ``limit_concurrency`` counts idle connections too, so 1,000 idle
sockets would get every new client a 503. :func:`guarded_protocol` subclasses uvicorn's HTTP
protocol (h11, or httptools when installed) so that:

* a connection that has not completed a request's headers within ``header_timeout_s`` of
  connecting (or of its previous response) is closed (with a 408 if it had sent part of them);
* at most ``max_connections`` are open: a new connection at the cap closes the connection that has
  been idle (no request in flight) the longest; when every one is busy it gets a JSON 503 and is
  closed. Idle sockets therefore never lock out a client that sends a request.

Requests in flight are capped separately by :class:`RequestLimitMiddleware` (``max_requests``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from spanqa.interfaces.serve.errors import error_response

__all__ = ["ConnectionLimits", "ConnectionRegistry", "guarded_protocol", "RequestLimitMiddleware", "fit_open_files"]

logger = logging.getLogger(__name__)

# How long a refused connection may linger after its 503 so the client reads it (then it is closed).
_REFUSED_LINGER_S = 1.0
# File descriptors kept for everything but client connections: model files, the index, logs, threads' pipes.
_RESERVED_FILES = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """Connection-level limits of one server.

    Attributes:
        header_timeout_s: Seconds a connection may take to send a request's headers.
        max_connections: Most open connections.
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1000


class ConnectionRegistry:
    """The open connections of one server: the idle ones in the order they became idle, and the busy ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._idle: OrderedDict[Any, None] = OrderedDict()
        self._busy: set[Any] = set()

    def __len__(self) -> int:
        return len(self._idle) + len(self._busy)

    @property
    def busy_count(self) -> int:
        """Connections with a request in flight."""
        return len(self._busy)

    def mark_idle(self, connection: Any) -> None:
        """``connection`` has no request in flight since now (it goes to the back of the eviction order)."""
        self._busy.discard(connection)
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def mark_busy(self, connection: Any) -> None:
        """``connection`` has a request in flight: it is never evicted."""
        self._idle.pop(connection, None)
        self._busy.add(connection)

    def remove(self, connection: Any) -> None:
        """Forget ``connection`` (closed, or closing)."""
        self._idle.pop(connection, None)
        self._busy.discard(connection)

    def pop_longest_idle(self) -> Any | None:
        """Forget and return the connection idle the longest (None: every connection is busy)."""
        if not self._idle:
            return None
        connection, _ = self._idle.popitem(last=False)
        return connection


def _raw_response(status: int, reason: str, kind: str, message: str) -> bytes:
    """A complete HTTP/1.1 response with the API's JSON error body that closes the connection.

    Written straight to the socket: these answers come before (or instead of) a parsed request.
    """
    body = json.dumps({"error": {"type": kind, "message": message}}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: close\r\nx-content-type-options: nosniff\r\n"
    )
    if status == 503:
        head += "retry-after: 1\r\n"
    return head.encode("ascii") + b"\r\n" + body


class _Guard(asyncio.Protocol):
    """Mixed in before uvicorn's HTTP protocol class by :func:`guarded_protocol` (see the module's docstring).

    A request is in flight while uvicorn's ``cycle`` (created once a request's headers are
    parsed) has not completed its response; both uvicorn protocols keep it in ``self.cycle``.
    """

    limits: ConnectionLimits
    registry: ConnectionRegistry
    # Set by uvicorn's protocol classes.
    cycle: Any
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._partial = False  # part of a request's headers arrived
        self._refused = False
        if len(self.registry) >= self.registry.limit:
            evicted = self.registry.pop_longest_idle()
            if evicted is None:
                self._refuse()
                return
            evicted._evict()
        self.registry.mark_idle(self)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # answered already; what the client still sends is read and dropped
        super().data_received(data)
        self._partial = True
        self._follow_request()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]  # uvicorn's protocols define it
        self._follow_request()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self.registry.remove(self)
        super().connection_lost(exc)

    def handle_websocket_upgrade(self, *args: Any) -> None:
        """The socket now belongs to a WebSocket protocol: this one stops watching it."""
        self._cancel_header_timer()
        self.registry.remove(self)
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]  # uvicorn's protocols define it

    def _follow_request(self) -> None:
        """Busy while a request is in flight (no header deadline); idle again after its response."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            self._cancel_header_timer()
            self._partial = False
            self.registry.mark_busy(self)
        elif self._header_timer is None:  # the response completed: the next request's headers are due
            self.registry.mark_idle(self)
            self._arm_header_timer()

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._headers_overdue)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_overdue(self) -> None:
        self._header_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or (cycle is not None and not cycle.response_complete):
            return
        if self._partial:  # a slow client gets told why; a silent one is just closed, like a keep-alive timeout
            message = f"the request's headers did not arrive within {self.limits.header_timeout_s:g} s"
            self.transport.write(_raw_response(408, "Request Timeout", "header_timeout", message))
        self.registry.remove(self)
        self.transport.close()

    def _evict(self) -> None:
        """Closed to make room for a new connection (it had no request in flight)."""
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self) -> None:
        """Answer 503 at once and close: the cap is reached and no connection is idle."""
        self._refused = True
        limit = self.registry.limit
        logger.warning("refused a connection: %d connections open, every one with a request in flight", limit)
        message = f"the server has its most connections open ({limit}), each with a request in flight; retry shortly"
        self.transport.write(_raw_response(503, "Service Unavailable", "too_many_connections", message))
        # Half-close so the 503 reaches the client before its request bytes could make the kernel reset
        # the connection; the client's own close (or the linger timer) ends it.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_REFUSED_LINGER_S, self.transport.close)


def guarded_protocol(limits: ConnectionLimits, base: type[asyncio.Protocol] | None = None) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class with the header deadline and the connection cap of ``limits``.

    Pass it as ``uvicorn.Config(http=...)`` (or ``uvicorn.run(http=...)``). Each call makes a class
    with a registry of its own: use one class per server.

    Args:
        limits: The header deadline and the most open connections.
        base: The uvicorn protocol class to guard (default: uvicorn's "auto" choice, httptools if
            installed, else h11).
    """
    if base is None:
        from uvicorn.protocols.http.auto import AutoHTTPProtocol

        base = AutoHTTPProtocol
    attributes = {"limits": limits, "registry": ConnectionRegistry(limits.max_connections)}
    return type(f"Guarded{base.__name__}", (_Guard, base), attributes)


def fit_open_files(max_connections: int) -> int:
    """The most connections this process can hold open: ``max_connections``, or fewer if file descriptors are short.

    Raises the soft limit on open files up to the hard limit when needed (each connection is a
    file descriptor; past the limit, accepting fails and new clients hang instead of getting a 503).

    Args:
        max_connections: The connections wanted.
    """
    try:
        import resource  # POSIX only; elsewhere the platform's own limits apply
    except ImportError:  # pragma: no cover - Windows
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = max_connections + _RESERVED_FILES
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new_soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
            soft = new_soft
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return max_connections
    fitted = max(1, soft - _RESERVED_FILES)
    logger.warning("max_connections %d lowered to %d: this process may open %d files (ulimit -n)", max_connections, fitted, soft)
    return fitted


class RequestLimitMiddleware:
    """At most ``limit`` HTTP requests handled at once; more get a JSON 503 at once (nothing queues for a slot)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            scope.setdefault("state", {})["spanqa_error_type"] = "too_many_requests"  # for the metrics
            message = f"the server is handling its most requests at once ({self.limit}); retry shortly"
            await error_response(503, "too_many_requests", message, headers={"Retry-After": "1"})(scope, receive, send)
            return
        self.active += 1  # one event loop: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
