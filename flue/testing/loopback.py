"""An aiohttp application on ``127.0.0.1`` and a free port: the base of the test servers
(the scripted model server, the fake Slack and GitHub APIs)."""

from __future__ import annotations

from typing import Any, Self


class LoopbackServer:
    """Subclasses add their routes in :meth:`routes`; ``async with`` starts and stops the server."""

    host = "127.0.0.1"
    port: int | None = None
    _runner: Any = None

    def routes(self, app: Any) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        from aiohttp import web

        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()
