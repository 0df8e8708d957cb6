"""What Flue's route handlers share: the runtime and the work they started.

``ServerState`` lives on the Flue application under :data:`STATE`. It keeps
strong references to the workflow runs started over HTTP (asyncio only keeps
weak ones, and a 202 response returns before the run ends) and to the
long-lived stream reads, so a graceful shutdown can wait for the former and
cut the latter at once (stream readers resume from their last offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from flue.project import Project
    from flue.runtime.runtime import Runtime


@dataclass
class ServerState:
    runtime: Runtime
    dev: bool = False
    runs: set[asyncio.Task[Any]] = field(default_factory=set)
    readers: set[asyncio.Task[Any]] = field(default_factory=set)
    sockets: weakref.WeakSet[web.WebSocketResponse] = field(default_factory=weakref.WeakSet)
    cache: dict[str, Any] = field(default_factory=dict)  # per-project lookups, keyed by what they depend on
    # flue dev: the diagnostics of the last reload that failed (the last good project keeps serving)
    load_errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def project(self) -> Project:
        # read through the runtime on every request: `flue dev` swaps the project in place
        return self.runtime.project

    def track_run(self, task: asyncio.Task[Any]) -> None:
        self.runs.add(task)
        task.add_done_callback(self.runs.discard)

    @contextlib.contextmanager
    def reading(self):
        """Mark the current handler as a stream read (cut first on shutdown)."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self.readers.add(task)
        try:
            yield
        finally:
            self.readers.discard(task)

    def track_socket(self, ws: web.WebSocketResponse) -> None:
        self.sockets.add(ws)

    async def cut_readers(self) -> None:
        """Shutdown: cut long-lived stream reads (clients resume from their offset) and close
        WebSockets with 1001 (going away)."""
        for task in list(self.readers):
            task.cancel()
        closing = [ws.close(code=1001, message=b"server shutting down") for ws in list(self.sockets) if not ws.closed]
        if closing:
            await asyncio.gather(*closing, return_exceptions=True)

    async def drain_runs(self, timeout: float) -> None:
        """Let in-flight runs finish for ``timeout`` seconds, then cancel them (they end errored)."""
        pending = [t for t in self.runs if not t.done()]
        if not pending:
            return
        _done, still = await asyncio.wait(pending, timeout=max(0.0, timeout))
        for task in still:
            task.cancel()
        if still:
            await asyncio.gather(*still, return_exceptions=True)


#: App key holding the :class:`ServerState` of a Flue application.
STATE = web.AppKey("flue_state", ServerState)


def state_of(request: web.Request) -> ServerState:
    return request.config_dict[STATE]
