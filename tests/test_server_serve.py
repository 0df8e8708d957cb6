"""flue.server.serve.Listener: swapping applications on one socket (``flue dev`` reloads)
and stopping gracefully (``flue start``), with real sockets and a real HTTP client."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from flue.server.serve import Listener


class Log(list[str]):
    """What the apps did, in order; ``await log.seen(entry)`` waits for an entry."""

    def __init__(self) -> None:
        super().__init__()
        self._events: dict[str, asyncio.Event] = {}

    def append(self, entry: str) -> None:
        super().append(entry)
        self._events.setdefault(entry, asyncio.Event()).set()

    async def seen(self, entry: str) -> None:
        async with asyncio.timeout(5):
            await self._events.setdefault(entry, asyncio.Event()).wait()


def make(name: str, log: Log, gate: asyncio.Event | None = None) -> web.Application:
    async def who(request: web.Request) -> web.Response:
        # the client's port identifies the connection the request came on
        return web.json_response({"app": name, "peer": request.transport.get_extra_info("peername")[1]})

    async def slow(request: web.Request) -> web.Response:
        assert gate is not None
        log.append(f"{name}: slow started")
        await gate.wait()
        return web.json_response({"app": name, "slow": True})

    async def cleanup(_app: web.Application) -> None:
        log.append(f"{name}: cleanup")

    app = web.Application()
    app.router.add_get("/who", who)
    app.router.add_get("/slow", slow)
    app.on_cleanup.append(cleanup)
    return app


async def test_swap_keeps_connections_and_drains_the_old_app() -> None:
    log = Log()
    gate = asyncio.Event()
    listener = Listener("127.0.0.1", 0)
    await listener.start(make("a", log, gate), shutdown_timeout=5)
    base = listener.url
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as kept, \
                aiohttp.ClientSession() as other:
            first = await (await kept.get(f"{base}/who")).json()
            assert first["app"] == "a"
            slow = asyncio.create_task(other.get(f"{base}/slow"))
            await log.seen("a: slow started")

            await listener.swap(make("b", log), retire_timeout=5)
            # the kept-alive connection is not dropped: same connection, new app
            second = await (await kept.get(f"{base}/who")).json()
            assert second == {"app": "b", "peer": first["peer"]}
            # the old app's request in flight finishes on the old app, then the old app is cleaned up
            assert "a: cleanup" not in log
            gate.set()
            async with asyncio.timeout(5):
                resp = await slow
            assert await resp.json() == {"app": "a", "slow": True}
            await log.seen("a: cleanup")
            assert log.index("a: cleanup") > log.index("a: slow started")
    finally:
        await listener.stop()
    assert log[-1] == "b: cleanup"


async def test_stop_refuses_new_connections_while_draining() -> None:
    log = Log()
    gate = asyncio.Event()
    listener = Listener("127.0.0.1", 0)
    await listener.start(make("a", log, gate), shutdown_timeout=5)
    base = listener.url
    async with aiohttp.ClientSession() as session:
        slow = asyncio.create_task(session.get(f"{base}/slow"))
        await log.seen("a: slow started")
        stopping = asyncio.create_task(listener.stop())
        await asyncio.sleep(0.1)
        assert not stopping.done()  # waiting for the request in flight
        async with aiohttp.ClientSession() as fresh:
            with pytest.raises(aiohttp.ClientConnectionError):
                await fresh.get(f"{base}/who")
        gate.set()
        async with asyncio.timeout(5):
            resp = await slow
            assert (await resp.json())["slow"] is True
            await stopping
    assert log == ["a: slow started", "a: cleanup"]
