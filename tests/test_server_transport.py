"""Issue 19: the server's connections, with raw sockets: read timeouts, a connection cap, and
the error envelope (no plain text, no traceback) for requests aiohttp's parser rejects.

The server is what ``flue start`` assembles: the project's runtime, ``make_app`` and the
:class:`~flue.server.serve.Listener`, with the limits of the project's ``flue.yaml``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from fixtures.server.support import scratch_project

from flue.project import load_project
from flue.runtime.runtime import Runtime
from flue.server.app import flue_state, make_app
from flue.server.serve import Listener, shutdown_runtime


@contextlib.asynccontextmanager
async def listening(tmp_path: Path, server: str) -> AsyncIterator[Listener]:
    root = scratch_project(tmp_path, "http://127.0.0.1:9/v1", config=f"server: {server}\n")
    project = load_project(root)
    assert not project.errors, [d.render() for d in project.errors]
    runtime = await Runtime.open(project)
    app = make_app(runtime)
    listener = Listener("127.0.0.1", 0)
    await listener.start(app, shutdown_timeout=1)
    try:
        yield listener
    finally:
        await listener.stop()
        await shutdown_runtime(flue_state(app), grace=1)


def parse(raw: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, json.loads(body)


async def read_to_end(reader: asyncio.StreamReader, within: float) -> bytes:
    return await asyncio.wait_for(reader.read(), within)  # read() returns at EOF: the server closed


async def test_slow_clients_are_cut_off_while_a_normal_request_is_answered(tmp_path: Path) -> None:
    async with listening(tmp_path, "{header_timeout: 1, body_timeout: 2, keepalive_timeout: 30}") as server:
        loop = asyncio.get_running_loop()
        started = loop.time()
        partial = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(200)]
        for _, writer in partial:
            writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\nX-Half: ")
        body = json.dumps({"text": "x" * 40}).encode()
        slow_r, slow_w = await asyncio.open_connection("127.0.0.1", server.port)
        slow_w.write(
            b"POST /workflows/echo?wait=result HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )

        async def drip() -> None:
            for byte in body:
                slow_w.write(bytes([byte]))
                await asyncio.sleep(1.0)  # 1 byte/s

        dripping = asyncio.create_task(drip())
        async with aiohttp.ClientSession() as http:  # meanwhile a normal request is answered
            async with http.post(f"{server.url}/workflows/echo?wait=result", json={"a": 1}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["payload"] == {"a": 1}
        assert loop.time() - started < 1.0  # before any limit was reached

        answers = await asyncio.gather(*(read_to_end(r, 5) for r, _ in partial))
        closed_after = loop.time() - started
        for raw in answers:
            status, headers, envelope = parse(raw)
            assert status == 408 and headers["connection"] == "close"
            assert envelope["error"]["type"] == "request_timeout"
        assert 0.9 < closed_after < 3.5  # header_timeout 1 s, plus slack for a loaded machine

        status, _, envelope = parse(await read_to_end(slow_r, 6))
        slow_after = loop.time() - started
        assert status == 408 and envelope["error"]["type"] == "request_timeout"
        assert "body" in envelope["error"]["message"]
        assert 1.9 < slow_after < 5  # body_timeout 2 s
        dripping.cancel()
        for _, writer in [*partial, (slow_r, slow_w)]:
            writer.close()


async def test_connections_beyond_the_cap_get_a_503_and_idle_ones_close(tmp_path: Path) -> None:
    async with listening(tmp_path, "{max_connections: 3, keepalive_timeout: 0.5}") as server:
        held = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(3)]
        await asyncio.sleep(0.1)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        status, headers, envelope = parse(await read_to_end(reader, 3))
        assert status == 503 and headers["retry-after"] == "1"
        assert envelope["error"]["type"] == "server_busy"
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)  # room again
        writer.write(b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), 3)).startswith(b"HTTP/1.1 200")
        # kept alive after the response, then closed once idle for keepalive_timeout
        await asyncio.wait_for(reader.read(), 3)
        writer.close()


MALFORMED = {
    "garbage request line": b"GARBAGE\r\n\r\n",
    "bad method": b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "bare LF line endings": b"GET / HTTP/1.1\nHost: x\n\n",
    "header without a colon": b"GET / HTTP/1.1\r\nHost: x\r\nNo Colon Here\r\n\r\n",
    "space before the colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "NUL in a header value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "obsolete line folding": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "oversize header line": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 9000 + b"\r\n\r\n",
    "oversize request line": b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "too many headers": b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n",
    "bad chunk size": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n",
    "chunk without its CRLF": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}XX0\r\n\r\n",
    "Content-Length with Transfer-Encoding": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    "bad Content-Length": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
    "two Content-Lengths": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    "bad gzip body": b"POST /workflows/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd",
    "TLS on the HTTP port": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
    "HTTP/2 preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
}


async def test_requests_the_parser_rejects_get_the_envelope_and_no_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with listening(tmp_path, "{}") as server:
        for name, raw in MALFORMED.items():
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(raw)
            status, headers, envelope = parse(await read_to_end(reader, 5))
            writer.close()
            assert status == 400, name
            assert headers["content-type"].startswith("application/json"), name
            assert set(envelope) == {"error"} and envelope["error"]["type"] == "invalid_request", name
            assert envelope["error"]["message"], name
    tracebacks = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not tracebacks, [r.getMessage() for r in tracebacks]
