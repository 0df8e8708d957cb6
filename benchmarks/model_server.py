"""A zero-latency scripted model server (Chat Completions, Responses, Anthropic Messages) that answers forever.

It is :class:`flue.testing.model_server.ScriptedModelServer` (the server the
test suite uses) with two changes for long runs: the script never runs out
(every request gets the same short reply) and only the last few requests are
recorded, so its memory stays flat. ``GET /bench/stats`` returns how many
requests it has answered, which the benchmarks use to know when background
work has drained.

Run it on its own (the benchmarks start it as a subprocess)::

    .venv/bin/python benchmarks/model_server.py [--port 0] [--reply TEXT] [--chunk-size N]

The first line on stdout is ``URL <base_url>`` once it is listening.

``--script echo`` decides each reply from the request instead (for
``vs_flue.py``, which drives another framework with the same model): the reply
is ``echo: <last user text>``, and a user message containing
``TOOL:<name> ARGS:<json object>`` is answered with one call of that tool,
then, once the tool's result is in the conversation, with text.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import signal
from typing import Any

from aiohttp import web

from flue.testing.echo import echo_turn
from flue.testing.model_server import ScriptedModelServer
from flue.testing.scripted import Script, ScriptedTurn


class EndlessScript(Script):
    """A script whose every call gets the same turn."""

    def __init__(self, turn: ScriptedTurn):
        super().__init__([])
        self.turn = turn

    @property
    def remaining(self) -> int:
        return 1 << 62

    def next(self, body: dict[str, Any]) -> ScriptedTurn:
        self.calls += 1
        return self.turn


class EchoScript(Script):
    """Replies derived from the (Chat Completions) request alone, so any client gets the same answers."""

    def __init__(self, chunk_size: int):
        super().__init__([])
        self.chunk_size = chunk_size

    @property
    def remaining(self) -> int:
        return 1 << 62

    def next(self, body: dict[str, Any]) -> ScriptedTurn:
        self.calls += 1
        return echo_turn(body).model_copy(update={"chunk_size": self.chunk_size})


class BenchModelServer(ScriptedModelServer):
    def __init__(self, script: Script, *, host: str = "127.0.0.1", port: int = 0):
        super().__init__(host=host)
        self.script = script
        self.records = collections.deque(maxlen=8)  # type: ignore[assignment]  # only appended to
        self._requested_port = port

    async def start(self) -> BenchModelServer:
        app = web.Application(client_max_size=256 * 1024 * 1024)  # prompts may carry large images
        self.routes(app)  # Chat Completions, Responses and Anthropic Messages
        app.router.add_get("/bench/stats", self._stats)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self._requested_port, backlog=1024).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.script.calls})


async def serve(args: argparse.Namespace) -> None:
    if args.script == "echo":
        script: Script = EchoScript(args.chunk_size)
    else:
        script = EndlessScript(ScriptedTurn(text=args.reply, chunk_size=args.chunk_size))
    server = await BenchModelServer(script, port=args.port).start()
    print(f"URL {server.url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--reply", default="OK, done.", help="the text of every reply")
    parser.add_argument("--script", choices=["fixed", "echo"], default="fixed",
                        help="fixed: every reply is --reply; echo: see above")
    parser.add_argument("--chunk-size", type=int, default=16, help="characters per streamed text delta")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
