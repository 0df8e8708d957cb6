"""Serving Flue applications: one listening socket, swappable applications, graceful shutdown.

Connections are read with the limits of ``flue.yaml``'s ``server:`` section
(header and body read timeouts, keep-alive, a connection cap; JSON errors
even for requests aiohttp's parser rejects): see :mod:`flue.server.transport`.

:class:`Listener` owns the listening socket and one aiohttp server on it, and
serves one application at a time. :meth:`Listener.swap` (``flue dev``
reloads) makes every request from then on go to the new application, on new
connections and on kept-alive ones alike: connections belong to the server,
not to an application, so a reload neither refuses nor drops a connection (a
client that reuses a pooled connection right after a reload would otherwise
see "server disconnected" on a POST it cannot safely retry). The previous
application is retired in the background: its long-lived stream reads are cut
at once (their clients resume from their last offset on the new one), its
other in-flight requests finish, then its cleanup hooks run.

:func:`shutdown_runtime` is the graceful end of a runtime: let HTTP-started
workflow runs and running agent submissions finish for ``grace`` seconds,
then cancel them (cancelled submissions stay ``running`` in the store and are
recovered by the next coordinator once their lease expires; cancelled runs end
``errored``), then close persistence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.web_log import AccessLogger
from aiohttp.web_server import Server

from flue.config import ServerConfig
from flue.server.state import STATE, ServerState
from flue.server.transport import FlueServer, Limits

log = logging.getLogger("flue.server")

ACCESS_LOG_FORMAT = '%r %s %Tfs'


class _SwappableRunner(web.BaseRunner):
    """An aiohttp runner whose one server hands each request to the current application.

    What :class:`aiohttp.web.AppRunner` does for its one application (set the
    loop, run ``on_startup``, freeze, then route requests through the app's
    request factory and handler) is done here for each application swapped in;
    those two calls are aiohttp's own (private) entry points, as AppRunner uses.
    """

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._app = app
        self.limits = Limits(server_config(app))
        self._inflight: dict[web.Application, int] = {}
        self._idle: dict[web.Application, asyncio.Event] = {}

    @property
    def app(self) -> web.Application:
        return self._app

    @staticmethod
    async def _start_app(app: web.Application) -> None:
        app._set_loop(asyncio.get_running_loop())
        app.on_startup.freeze()
        await app.startup()
        app.freeze()

    async def _make_server(self) -> Server:
        await self._start_app(self._app)
        kwargs = {"access_log_class": AccessLogger, **self._kwargs}
        return FlueServer(
            self._handle, request_factory=self._make_request, loop=asyncio.get_running_loop(), limits=self.limits, **kwargs
        )

    def _make_request(self, *args: Any) -> web.BaseRequest:
        return self._app._make_request(*args)

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        app = self._app
        self._inflight[app] = self._inflight.get(app, 0) + 1
        try:
            return await app._handle(request)  # type: ignore[arg-type]
        finally:
            left = self._inflight[app] - 1
            if left:
                self._inflight[app] = left
            else:
                del self._inflight[app]
                if app in self._idle:
                    self._idle[app].set()

    async def swap(self, app: web.Application) -> web.Application:
        """Start ``app`` and route every later request to it; return the previous app."""
        await self._start_app(app)
        old, self._app = self._app, app
        self.limits.update(server_config(app))  # new connections follow a changed server: section
        return old

    async def retire(self, app: web.Application, timeout: float) -> None:
        """Cut ``app``'s stream reads (on_shutdown), let its requests finish for ``timeout``
        seconds, then run its cleanup hooks."""
        try:
            await app.shutdown()
            if self._inflight.get(app):
                idle = self._idle.setdefault(app, asyncio.Event())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle.wait(), timeout)
            await app.cleanup()
        finally:
            self._idle.pop(app, None)

    async def shutdown(self) -> None:
        await self._app.shutdown()

    async def _cleanup_server(self) -> None:
        await self._app.cleanup()


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to listen on) is only reachable from this machine."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_config(app: web.Application) -> ServerConfig:
    """The ``server:`` settings of the project an app serves (defaults for a bare app)."""
    state = app.get(STATE)
    return state.project.config.server if state is not None else ServerConfig()


def bind_error(command: str, host: str, port: int, exc: OSError) -> str:
    """One line saying why ``command`` cannot listen; a taken port suggests ``--port``."""
    import errno

    if exc.errno == errno.EADDRINUSE:
        return (f"{command}: port {port} is already in use on {host} (another server is running?); "
                f"pick another with --port, e.g. --port {port + 1 if 0 < port < 65535 else 0} (0 picks a free one)")
    return f"{command}: cannot listen on {host}:{port}: {exc.strerror or exc}"


def url_for(host: str, port: int) -> str:
    """The URL a client on this host uses for a server listening on ``host:port``."""
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "[::1]"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Listener:
    def __init__(self, host: str, port: int, *, access_log: logging.Logger | None = None, reuse_port: bool = False):
        self.host = host
        self.requested_port = port
        self.access_log = access_log
        self.reuse_port = reuse_port  # SO_REUSEPORT: several processes listen on the port (flue start --workers)
        self._sock: socket.socket | None = None
        self._runner: _SwappableRunner | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._sock is not None, "not started"
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return url_for(self.host, self.port)

    @property
    def bound(self) -> str:
        """The address the socket really listens on, ``host:port`` (``[::]:port`` for IPv6)."""
        assert self._sock is not None, "not started"
        host, port = self._sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def app(self) -> web.Application | None:
        return self._runner.app if self._runner is not None else None

    def bind(self) -> None:
        """Bind the socket (raises OSError when the port is taken)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.create_server(
            (self.host, self.requested_port), family=family, backlog=512, reuse_port=self.reuse_port
        )

    async def start(self, app: web.Application, *, shutdown_timeout: float = 10.0) -> None:
        """Serve ``app``; on :meth:`stop`, requests in flight get ``shutdown_timeout`` seconds."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        kwargs: dict[str, Any] = {"shutdown_timeout": shutdown_timeout, "handle_signals": False}
        if self.access_log is not None:
            kwargs.update(access_log=self.access_log, access_log_format=ACCESS_LOG_FORMAT)
        else:
            kwargs["access_log"] = None
        runner = _SwappableRunner(app, **kwargs)
        await runner.setup()
        self._runner = runner
        await web.SockSite(runner, self._sock).start()

    async def swap(self, app: web.Application, *, retire_timeout: float = 60.0) -> web.Application | None:
        """Serve ``app`` from now on; the previous app retires in the background. Returns the previous app."""
        if self._runner is None:
            await self.start(app)
            return None
        old = await self._runner.swap(app)
        task = asyncio.get_running_loop().create_task(self._runner.retire(old, retire_timeout), name="flue-retire-app")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return old

    async def stop(self) -> None:
        """Stop accepting (the socket closes at once), let in-flight requests finish
        (up to the shutdown timeout given to :meth:`start`), run the apps' cleanup hooks."""
        runner, self._runner = self._runner, None
        try:
            if runner is not None:
                await runner.cleanup()
            if self._retiring:
                await asyncio.gather(*self._retiring, return_exceptions=True)
        finally:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


async def shutdown_runtime(state: ServerState, *, grace: float) -> None:
    """Drain runs and submissions for ``grace`` seconds, then close the runtime."""
    runtime = state.runtime
    await asyncio.gather(state.drain_runs(grace), runtime.coordinator.stop(grace=grace), return_exceptions=True)
    await runtime.close()
