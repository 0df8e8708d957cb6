"""Connections of Flue's HTTP server: read timeouts, a connection cap, JSON errors from the parser.

aiohttp reads a request for as long as the client takes: a client that sends
half a request line, or a body at one byte a second, holds its connection
(and a file descriptor) forever. :class:`FlueRequestHandler` (aiohttp's
per-connection protocol, subclassed) adds what a reverse proxy would, from
``flue.yaml``'s ``server:`` section (:class:`flue.config.ServerConfig`):

- ``header_timeout`` (60 s): a request line and its headers must arrive
  within this long of the connection opening, or of the first byte of a
  later request on a kept-alive connection. Else: ``408 request_timeout``
  and the connection is closed.
- ``body_timeout`` (60 s) plus one second per ``body_min_rate`` bytes
  received (64 KiB): a body slower than that on average is cut off, with
  ``408 request_timeout`` (the handler reading it gets the error), and the
  connection is closed. Uploads at 64 KiB/s or more are never cut.
- ``keepalive_timeout`` (75 s): an idle kept-alive connection is closed.
- ``max_connections`` (80% of the file-descriptor limit, at most 10,000):
  beyond it a new connection gets ``503 server_busy`` (``Retry-After: 1``)
  and is closed at once, so descriptors stay available for everything else.
- A request aiohttp's parser rejects (bad request line, header, chunked
  framing, an oversized line...) gets ``400 invalid_request`` in the error
  envelope, and one debug line in the log, not a plain-text body and a
  traceback. Only a real 500 is logged with its traceback.

Long responses (SSE, long-poll, WebSockets) are not limited here: the timers
cover only reading a request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_server import Server

from flue.config import ServerConfig
from flue.server.errors import NOSNIFF, HttpError, internal_error, invalid_request

log = logging.getLogger("flue.server")

MAX_CONNECTIONS_CAP = 10_000
# After answering a client that may still be sending (a 408), how long to keep reading and
# dropping its bytes before closing: closing with unread input makes the kernel send a reset,
# which can destroy the answer before the client reads it.
LINGER_S = 2.0


def default_max_connections() -> int:
    """80% of the soft file-descriptor limit (the rest: databases, sandboxes, model calls)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS_CAP
    return max(16, min(MAX_CONNECTIONS_CAP, int(soft * 0.8)))


class Limits:
    """The settings every connection reads when it needs them (``flue dev`` swaps them on reload)."""

    def __init__(self, config: ServerConfig | None = None) -> None:
        self.update(config or ServerConfig())

    def update(self, config: ServerConfig) -> None:
        self.config = config
        self.max_connections = config.max_connections or default_max_connections()


def request_timeout(what: str) -> HttpError:
    return HttpError(
        408, "request_timeout", f"The request {what} did not arrive in time.",
        "The connection was closed; send the request again, faster.",
    )


def server_busy() -> HttpError:
    return HttpError(
        503, "server_busy", "The server has too many open connections.", "Retry shortly.",
        headers={"Retry-After": "1"},
    )


def raw_response(error: HttpError) -> bytes:
    """A whole HTTP/1.1 response for a connection with no request object to answer through."""
    body = json.dumps(error.envelope().wire()).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Content-Length": str(len(body)),
        "Connection": "close",
        **NOSNIFF,
        **error.headers,
    }
    head = f"HTTP/1.1 {error.status} {HTTPStatus(error.status).phrase}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode("latin-1") + b"\r\n" + body


class FlueRequestHandler(RequestHandler):
    """aiohttp's connection protocol with the limits above."""

    def __init__(self, manager: FlueServer, *, limits: Limits, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connections -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        manager = self._manager
        if manager is not None and len(manager._connections) >= self._limits.max_connections:
            BaseProtocol.connection_made(self, transport)
            self._force_close = True  # read nothing, start no handler
            self._reject(server_busy())
            return
        super().connection_made(transport)
        self._arm_head()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _reject(self, error: HttpError, *, linger: bool = False) -> None:
        """Answer without a request object, and close (after lingering, if asked)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            self.force_close()
            return
        transport.write(raw_response(error))  # type: ignore[attr-defined]
        if not linger:
            self.force_close()
            return
        self._force_close = True  # drop whatever else arrives; end the handler loop
        if self._waiter is not None:
            self._waiter.cancel()
        _Lingering(transport, self._loop).close()
        self.transport = None

    # -- reading a request -----------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        if self._force_close or self._close or self._upgraded:
            self._disarm()
            return
        if self._request_count > before:  # a head (or a parse error) is in: the next phase
            self._cancel_head()
            message, payload = self._messages[-1] if self._messages else (None, None)
            if payload is not None and not payload.is_eof():
                self._arm_body(payload)
        elif data and self._head_timer is None and self._body_timer is None:
            self._arm_head()  # the first bytes of a request on a kept-alive connection

    def _arm_head(self) -> None:
        if self._head_timer is None:
            self._head_timer = self._loop.call_later(self._limits.config.header_timeout, self._head_late)

    def _cancel_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self._request_in_progress or self._messages:
            self._arm_head()  # bytes of a pipelined request came in meanwhile: check again later
            return
        log.debug("closing a connection whose request headers did not arrive in time")
        self._reject(request_timeout("headers"), linger=True)

    def _arm_body(self, payload: Any) -> None:
        started = self._loop.time()
        config = self._limits.config

        def check() -> None:
            self._body_timer = None
            if payload.is_eof() or self._force_close:
                return
            allowed = config.body_timeout + payload.total_bytes / config.body_min_rate
            if self._loop.time() - started < allowed:
                self._body_timer = self._loop.call_at(started + allowed, check)
                return
            log.debug("cutting off a request body that did not arrive in time")
            if self._request_in_progress and self.transport is not None:
                self.close()  # no keep-alive; what else arrives is dropped; the handler answers the 408
                self.transport = _Lingering(self.transport, self._loop)  # type: ignore[assignment]
                payload.set_exception(request_timeout("body"))
                payload.feed_eof()
            else:
                self.force_close()

        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self._loop.call_at(started + config.body_timeout, check)

    def _disarm(self) -> None:
        self._cancel_head()
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # -- errors aiohttp answers itself ------------------------------------------------

    def log_exception(self, *args: Any, **kw: Any) -> None:
        exc = kw.get("exc_info")
        if isinstance(exc, RequestPayloadError):
            # aiohttp draining a body whose framing broke (already answered with a 400)
            log.debug("dropped a connection whose request body could not be read: %s", exc)
            return
        super().log_exception(*args, **kw)

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("the response already started; the connection is dropped")
        if status >= 500:
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            error = internal_error() if status == 500 else HttpError(status, "gateway_timeout", "The request took too long.")
        else:
            reason = (getattr(exc, "message", None) or message or str(exc or "") or "").strip()
            log.debug("rejected a malformed request from %s: %s", request.remote, reason)
            error = invalid_request("The request is not valid HTTP.", reason[:300])
        resp = error.response()
        resp.force_close()
        return resp


class _Lingering:
    """A transport whose ``close()`` half-closes (the client reads the answer and EOF) and
    closes for real :data:`LINGER_S` later, reading (and dropping) input meanwhile."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def close(self) -> None:
        t = self._transport
        if t.is_closing():
            return
        try:
            if t.can_write_eof():
                t.write_eof()
        except OSError:
            t.close()
            return
        self._loop.call_later(LINGER_S, t.close)


class FlueServer(Server):
    """aiohttp's low-level server, making :class:`FlueRequestHandler` connections."""

    def __init__(self, *args: Any, limits: Limits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits

    def __call__(self) -> RequestHandler:
        kwargs = {**self._kwargs, "keepalive_timeout": self.limits.config.keepalive_timeout}
        return FlueRequestHandler(self, loop=self._loop, limits=self.limits, **kwargs)
