"""Serving Flue applications: one listening socket, swappable applications, graceful shutdown.

:class:`Listener` owns the listening socket and serves one application at a
time on it. :meth:`Listener.swap` starts serving a new application on the same
socket before the old one stops accepting, so ``flue dev`` reloads never
refuse a connection; the old application finishes its in-flight requests in
the background (its long-lived stream reads are cut at once; their clients
resume from their last offset on the new one).

:func:`shutdown_runtime` is the graceful end of a runtime: let HTTP-started
workflow runs and running agent submissions finish for ``grace`` seconds,
then cancel them (cancelled submissions stay ``running`` in the store and are
recovered by the next coordinator once their lease expires; cancelled runs end
``errored``), then close persistence.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import Any

from aiohttp import web

from flue.server.state import ServerState

log = logging.getLogger("flue.server")

ACCESS_LOG_FORMAT = '%r %s %Tfs'


class Listener:
    def __init__(self, host: str, port: int, *, access_log: logging.Logger | None = None):
        self.host = host
        self.requested_port = port
        self.access_log = access_log
        self._sock: socket.socket | None = None
        self._runner: web.AppRunner | None = None
        self._retiring: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._sock is not None, "not started"
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def app(self) -> web.Application | None:
        return self._runner.app if self._runner is not None else None

    def bind(self) -> None:
        """Bind the socket (raises OSError when the port is taken)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.create_server((self.host, self.requested_port), family=family, backlog=512)

    async def _serve(self, app: web.Application, shutdown_timeout: float) -> web.AppRunner:
        assert self._sock is not None
        kwargs: dict[str, Any] = {"shutdown_timeout": shutdown_timeout, "handle_signals": False}
        if self.access_log is not None:
            kwargs.update(access_log=self.access_log, access_log_format=ACCESS_LOG_FORMAT)
        else:
            kwargs["access_log"] = None
        runner = web.AppRunner(app, **kwargs)
        await runner.setup()
        # each site gets its own descriptor of the one socket: closing a site closes only its copy
        await web.SockSite(runner, self._sock.dup()).start()
        return runner

    async def start(self, app: web.Application, *, shutdown_timeout: float = 10.0) -> None:
        if self._sock is None:
            self.bind()
        self._runner = await self._serve(app, shutdown_timeout)

    async def swap(self, app: web.Application, *, retire_timeout: float = 60.0) -> web.Application | None:
        """Serve ``app`` from now on; the previous app drains in the background. Returns the previous app."""
        old = self._runner
        self._runner = await self._serve(app, retire_timeout)
        if old is None:
            return None
        task = asyncio.get_running_loop().create_task(old.cleanup(), name="flue-retire-app")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)
        return old.app

    async def stop(self) -> None:
        """Stop accepting, let in-flight requests finish (up to the runner's shutdown timeout)."""
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
