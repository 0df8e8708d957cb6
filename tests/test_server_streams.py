"""The Durable Streams read path (flue.server.streams) and the error envelope (flue.server.errors).

Reads go through a small app shaped like Flue's run/agent routes over the real
SQLite event-stream store; the PyPI ``durable-streams`` client reads the same
streams as an independent client.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from durable_streams import astream
from fixtures.postgres import two_replicas

from flue.persistence.base import format_offset
from flue.persistence.sqlite import SQLiteAdapter
from flue.server import sse
from flue.server.errors import (
    DEV_MODE,
    ERROR_STATUS,
    HttpError,
    agent_not_found,
    error_middleware,
    method_not_allowed,
    run_not_found,
    stream_not_found,
)
from flue.server.streams import read_stream, response_cursor

RUN = "runs/run_1"


@pytest.fixture
async def store() -> AsyncIterator[Any]:
    adapter = SQLiteAdapter()
    await adapter.migrate()
    stores = await adapter.connect()
    yield stores.streams
    await adapter.close()


def make_app(store: Any, *, dev_mode: bool = False, **options: Any) -> web.Application:
    """Routes shaped like Flue's: runs 404 as run_not_found, agents as stream_not_found.

    The poll interval defaults to longer than any test waits, so in-process wake-ups
    must come from the store's listener; the cross-process test sets a short one."""
    options.setdefault("long_poll_timeout", 5.0)
    options.setdefault("poll_interval", 30.0)

    async def run_stream(request: web.Request) -> web.StreamResponse:
        run_id = request.match_info["run_id"]
        return await read_stream(request, store, f"runs/{run_id}", not_found=run_not_found(run_id), **options)

    async def agent_stream(request: web.Request) -> web.StreamResponse:
        path = f"agents/{request.match_info['name']}/{request.match_info['id']}"
        return await read_stream(request, store, path, not_found=stream_not_found(path), **options)

    async def boom(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("database password is hunter2")

    class ModelNotConfigured(Exception):
        error_type = "model_not_configured"

    async def typed(request: web.Request) -> web.StreamResponse:
        raise ModelNotConfigured('No model is configured for agent "helper".')

    async def missing_agent(request: web.Request) -> web.StreamResponse:
        raise agent_not_found("missing", ["assistant", "triage"])

    app = web.Application(middlewares=[error_middleware])
    app[DEV_MODE] = dev_mode
    app.router.add_get("/runs/{run_id}", run_stream)
    app.router.add_get("/agents/{name}/{id}", agent_stream)
    app.router.add_get("/boom", boom)
    app.router.add_get("/typed", typed)
    app.router.add_post("/agents/{name}", missing_agent)
    return app


async def client_for(app: web.Application) -> TestClient:
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def client(store: Any) -> AsyncIterator[TestClient]:
    c = await client_for(make_app(store))
    yield c
    await c.close()


async def seed(store: Any, path: str, n: int, *, closed: bool = False) -> None:
    await store.create_stream(path)
    if n:
        await store.append_events(path, [{"type": "log", "n": i} for i in range(1, n + 1)])
    if closed:
        await store.close_stream(path)


def assert_security_headers(resp: Any) -> None:
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


def sse_frames(text: str) -> list[tuple[str, str]]:
    frames = []
    for block in text.split("\n\n"):
        event = next((line[7:] for line in block.split("\n") if line.startswith("event: ")), None)
        data = "\n".join(line[5:] for line in block.split("\n") if line.startswith("data:"))
        if event:
            frames.append((event, data))
    return frames


async def read_sse_until(resp: Any, predicate: Any, *, within: float = 5.0) -> list[tuple[str, str]]:
    """Read the SSE body until ``predicate(frames)`` holds (or the server ends it)."""
    text = ""
    async with asyncio.timeout(within):
        while True:
            chunk = await resp.content.readany()
            if not chunk:
                return sse_frames(text)
            text += chunk.decode()
            frames = sse_frames(text)
            if predicate(frames):
                return frames


# -- error envelope ------------------------------------------------------------------


async def test_unknown_route_and_wrong_method_are_envelopes(client: TestClient) -> None:
    resp = await client.get("/nope")
    assert resp.status == 404
    body = await resp.json()
    assert body["error"]["type"] == "route_not_found"
    assert "GET /nope" in body["error"]["message"]
    assert body["error"]["details"]
    assert_security_headers(resp)

    resp = await client.delete("/runs/run_1")
    assert resp.status == 405
    assert (await resp.json())["error"]["type"] == "method_not_allowed"
    assert set(resp.headers["Allow"].split(", ")) == {"GET", "HEAD"}
    assert_security_headers(resp)


async def test_unknown_exception_is_internal_error_without_leaking(store: Any) -> None:
    for dev_mode in (False, True):
        c = await client_for(make_app(store, dev_mode=dev_mode))
        try:
            resp = await c.get("/boom")
            assert resp.status == 500
            text = await resp.text()
            error = json.loads(text)["error"]
            assert error["type"] == "internal_error"
            assert error["details"] == "The server encountered an unexpected error while handling this request."
            if dev_mode:
                assert "hunter2" in error["dev"] and "RuntimeError" in error["dev"]
            else:
                assert "hunter2" not in text and "dev" not in error
            assert_security_headers(resp)
        finally:
            await c.close()


async def test_dev_hints_only_in_dev_mode_and_typed_errors_keep_their_type(store: Any) -> None:
    c = await client_for(make_app(store, dev_mode=False))
    try:
        resp = await c.post("/agents/missing")
        error = (await resp.json())["error"]
        assert resp.status == 404 and error["type"] == "agent_not_found" and "dev" not in error
        resp = await c.get("/typed")
        error = (await resp.json())["error"]
        assert resp.status == 500
        assert error == {"type": "model_not_configured", "message": 'No model is configured for agent "helper".',
                         "details": ""}
    finally:
        await c.close()
    c = await client_for(make_app(store, dev_mode=True))
    try:
        resp = await c.post("/agents/missing")
        assert (await resp.json())["error"]["dev"] == 'Available agents: "assistant", "triage".'
    finally:
        await c.close()


def test_documented_statuses_and_allow_header() -> None:
    assert ERROR_STATUS == {
        "invalid_request": 400, "invalid_json": 400, "agent_not_found": 404, "workflow_not_found": 404,
        "route_not_found": 404, "run_not_found": 404, "stream_not_found": 404, "method_not_allowed": 405,
        "unsupported_media_type": 415, "internal_error": 500, "run_store_unavailable": 501,
        # ours: size limits and backpressure (issue 17)
        "payload_too_large": 413, "queue_full": 429, "overloaded": 503,
    }
    err = method_not_allowed("PUT", ["post", "GET", "HEAD"])
    assert err.status == 405 and err.headers["Allow"] == "GET, HEAD, POST"
    assert isinstance(run_not_found("run_x"), HttpError)


# -- catch-up ---------------------------------------------------------------------------


async def test_missing_stream_uses_the_callers_404(client: TestClient) -> None:
    resp = await client.get("/runs/run_missing")
    assert resp.status == 404
    assert (await resp.json())["error"]["type"] == "run_not_found"
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert_security_headers(resp)
    for query in ("?offset=now&live=long-poll", "?offset=-1&live=sse"):
        resp = await client.get("/agents/helper/u1" + query)
        assert resp.status == 404
        assert (await resp.json())["error"]["type"] == "stream_not_found"
    resp = await client.head("/runs/run_missing")
    assert resp.status == 404


async def test_catch_up_returns_json_array_and_protocol_headers(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 3)
    resp = await client.get("/runs/run_1")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert await resp.json() == [{"type": "log", "n": 1}, {"type": "log", "n": 2}, {"type": "log", "n": 3}]
    assert resp.headers["Stream-Next-Offset"] == format_offset(3)
    assert resp.headers["Stream-Up-To-Date"] == "true"
    assert "Stream-Closed" not in resp.headers
    assert resp.headers["ETag"]
    assert resp.headers["Cache-Control"] == "private, no-cache"  # the tail of an open stream moves
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert_security_headers(resp)

    same = await client.get("/runs/run_1?offset=-1")
    assert await same.json() == await resp.json()


async def test_offsets_resume_and_now(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 3)
    resp = await client.get(f"/runs/run_1?offset={format_offset(1)}")
    assert [e["n"] for e in await resp.json()] == [2, 3]

    resp = await client.get("/runs/run_1?offset=now")
    assert resp.status == 200 and await resp.text() == "[]"
    assert resp.headers["Stream-Next-Offset"] == format_offset(3)
    assert resp.headers["Stream-Up-To-Date"] == "true"
    assert "no-store" in resp.headers["Cache-Control"] and "ETag" not in resp.headers

    resp = await client.get(f"/runs/run_1?offset={format_offset(3)}")
    assert resp.status == 200 and await resp.json() == []
    assert resp.headers["Stream-Up-To-Date"] == "true"


@pytest.mark.parametrize(
    "query",
    [
        "offset=abc", "offset=0,1", "offset=0%201", "offset=", "offset=-1&offset=now", "offset=-2",
        f"offset={format_offset(99)}", "live=long-poll", "live=sse", "offset=-1&live=true",
        "tail=0", "tail=-1", "tail=x", f"offset={format_offset(1)}&tail=2",
    ],
)
async def test_bad_query_is_invalid_request(store: Any, client: TestClient, query: str) -> None:
    await seed(store, RUN, 3)
    resp = await client.get(f"/runs/run_1?{query}")
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert error["type"] == "invalid_request" and error["message"]
    assert_security_headers(resp)


async def test_tail_returns_the_last_n_events(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 5)
    resp = await client.get("/runs/run_1?offset=-1&tail=2")
    assert [e["n"] for e in await resp.json()] == [4, 5]
    assert resp.headers["Stream-Next-Offset"] == format_offset(5)
    resp = await client.get("/runs/run_1?tail=50")
    assert [e["n"] for e in await resp.json()] == [1, 2, 3, 4, 5]


async def test_etag_revalidation(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 2)
    first = await client.get("/runs/run_1")
    etag = first.headers["ETag"]
    again = await client.get("/runs/run_1", headers={"If-None-Match": etag})
    assert again.status == 304 and await again.read() == b""
    assert again.headers["Stream-Next-Offset"] == format_offset(2)
    await store.append_events(RUN, [{"type": "log", "n": 3}])
    changed = await client.get("/runs/run_1", headers={"If-None-Match": etag})
    assert changed.status == 200 and changed.headers["ETag"] != etag
    assert len(await changed.json()) == 3


async def test_batches_are_partial_until_the_tail(store: Any) -> None:
    await seed(store, RUN, 5, closed=True)
    c = await client_for(make_app(store, batch_limit=2))
    try:
        seen, offset, responses = [], "-1", []
        while True:
            resp = await c.get(f"/runs/run_1?offset={offset}")
            seen += [e["n"] for e in await resp.json()]
            offset = resp.headers["Stream-Next-Offset"]
            responses.append(resp)
            if "Stream-Up-To-Date" in resp.headers:
                break
        assert seen == [1, 2, 3, 4, 5] and len(responses) == 3
        # a partial batch never claims closure; it is immutable, so cacheable
        assert "Stream-Closed" not in responses[0].headers
        assert "max-age=60" in responses[0].headers["Cache-Control"]
        assert responses[-1].headers["Stream-Closed"] == "true"
    finally:
        await c.close()


async def test_head_is_metadata_only(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 2)
    resp = await client.head("/runs/run_1")
    assert resp.status == 200 and await resp.read() == b""
    assert resp.headers["Stream-Next-Offset"] == format_offset(2)
    assert resp.headers["Content-Type"] == "application/json"
    assert "no-store" in resp.headers["Cache-Control"] and "Stream-Closed" not in resp.headers
    await store.close_stream(RUN)
    assert (await client.head("/runs/run_1")).headers["Stream-Closed"] == "true"


# -- long-poll -------------------------------------------------------------------------------


async def test_long_poll_times_out_with_204(store: Any) -> None:
    await seed(store, RUN, 1)
    c = await client_for(make_app(store, long_poll_timeout=0.3))
    try:
        started = time.monotonic()
        resp = await c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll")
        elapsed = time.monotonic() - started
        assert resp.status == 204 and 0.25 <= elapsed < 3
        assert resp.headers["Stream-Up-To-Date"] == "true"
        assert resp.headers["Stream-Next-Offset"] == format_offset(1)
        assert resp.headers["Stream-Cursor"].isdigit()
        assert_security_headers(resp)
    finally:
        await c.close()


async def test_long_poll_delivers_an_append_made_after_the_read_started(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 1)
    read = asyncio.create_task(client.get("/runs/run_1?offset=now&live=long-poll"))
    await asyncio.sleep(0.2)
    assert not read.done()
    started = time.monotonic()
    await store.append_events(RUN, [{"type": "log", "n": 2}])
    async with asyncio.timeout(5):
        resp = await read
    assert time.monotonic() - started < 1.0  # woken by the listener, not the 5 s timeout
    assert resp.status == 200
    assert await resp.json() == [{"type": "log", "n": 2}]
    assert resp.headers["Stream-Next-Offset"] == format_offset(2)
    assert resp.headers["Stream-Cursor"].isdigit()


async def test_live_readers_see_appends_from_another_process(tmp_path: Path) -> None:
    """A second adapter on the same file stands in for another server process: its
    appends fire no listener here, so only the poll interval can find them."""
    db = tmp_path / "flue.db"
    reader_side, writer_side = SQLiteAdapter(db), SQLiteAdapter(db)
    await reader_side.migrate()
    reader = (await reader_side.connect()).streams
    writer = (await writer_side.connect()).streams
    await seed(writer, RUN, 1)
    c = await client_for(make_app(reader, long_poll_timeout=5.0, poll_interval=0.1))
    try:
        read = asyncio.create_task(c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
        await asyncio.sleep(0.2)
        await writer.append_events(RUN, [{"type": "log", "n": 2}])
        async with asyncio.timeout(3):
            resp = await read
        assert resp.status == 200 and [e["n"] for e in await resp.json()] == [2]
    finally:
        await c.close()
        await reader_side.close()
        await writer_side.close()


async def test_long_poll_on_a_closed_stream_returns_at_once(store: Any) -> None:
    await seed(store, RUN, 1, closed=True)
    c = await client_for(make_app(store, long_poll_timeout=10))
    try:
        started = time.monotonic()
        resp = await c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll")
        assert time.monotonic() - started < 2
        assert resp.status == 204
        assert resp.headers["Stream-Closed"] == "true" and resp.headers["Stream-Up-To-Date"] == "true"
        # data still waiting is delivered first, with closure since it reaches the tail
        resp = await c.get("/runs/run_1?offset=-1&live=long-poll")
        assert resp.status == 200 and resp.headers["Stream-Closed"] == "true"
    finally:
        await c.close()


async def test_closure_wakes_a_waiting_long_poll(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 1)
    read = asyncio.create_task(client.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
    await asyncio.sleep(0.2)
    await store.close_stream(RUN)
    async with asyncio.timeout(3):
        resp = await read
    assert resp.status == 204 and resp.headers["Stream-Closed"] == "true"


# -- SSE ---------------------------------------------------------------------------------------


async def test_sse_catch_up_then_live_then_closed(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 2)
    resp = await client.get("/runs/run_1?offset=-1&live=sse")
    assert resp.status == 200 and "Stream-Closed" not in resp.headers
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["Cache-Control"] == "no-cache" and "Content-Length" not in resp.headers
    assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert_security_headers(resp)

    frames = await read_sse_until(resp, lambda f: len(f) >= 2)
    assert frames[0][0] == "data" and [e["n"] for e in json.loads(frames[0][1])] == [1, 2]
    control = json.loads(frames[1][1])
    assert frames[1][0] == "control"
    assert control["streamNextOffset"] == format_offset(2) and control["upToDate"] is True
    assert control["streamCursor"].isdigit()

    await store.append_events(RUN, [{"type": "log", "n": 3, "text": "two\r\nlines"}])
    frames = await read_sse_until(resp, lambda f: len(f) >= 2)
    assert json.loads(frames[0][1]) == [{"type": "log", "n": 3, "text": "two\r\nlines"}]
    assert json.loads(frames[1][1])["streamNextOffset"] == format_offset(3)

    await store.close_stream(RUN)
    frames = await read_sse_until(resp, lambda f: False)  # returns when the server ends the body
    assert [f[0] for f in frames] == ["control"]
    final = json.loads(frames[0][1])
    assert final == {"streamNextOffset": format_offset(3), "streamClosed": True, "upToDate": True}


async def test_sse_from_now_on_empty_and_closed_streams(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 2)
    resp = await client.get("/runs/run_1?offset=now&live=sse")
    frames = await read_sse_until(resp, lambda f: len(f) >= 1)
    assert frames == [("control", frames[0][1])]
    assert json.loads(frames[0][1])["upToDate"] is True
    assert json.loads(frames[0][1])["streamNextOffset"] == format_offset(2)
    resp.close()

    await seed(store, "runs/run_2", 1, closed=True)
    resp = await client.get(f"/runs/run_2?offset={format_offset(1)}&live=sse")
    assert resp.headers["Stream-Closed"] == "true"
    frames = await read_sse_until(resp, lambda f: False)
    assert [json.loads(d) for _, d in frames] == [
        {"streamNextOffset": format_offset(1), "streamClosed": True, "upToDate": True}
    ]


async def test_sse_ends_connections_after_the_max_duration(store: Any) -> None:
    await seed(store, RUN, 0)
    c = await client_for(make_app(store, sse_max_duration=0.3))
    try:
        resp = await c.get("/runs/run_1?offset=-1&live=sse")
        frames = await read_sse_until(resp, lambda f: False, within=3)
        assert [f[0] for f in frames] == ["control"]
    finally:
        await c.close()


def test_sse_frames_split_every_line_terminator() -> None:
    raw = sse.frame("a\r\nevent: control\rdata: x\n\nb", event="data").decode()
    assert raw == "event: data\ndata:a\ndata:event: control\ndata:data: x\ndata:\ndata:b\n\n"
    assert "\n\n" not in raw[:-2]  # one frame, whatever the payload holds
    with pytest.raises(ValueError):
        sse.frame("x", event="data\nevent: control")


def test_cursor_moves_forward() -> None:
    now = time.time()
    current = response_cursor(None, now=now)
    assert current.isdigit()
    assert response_cursor("123", now=now) == current  # an old cursor: the current interval
    assert int(response_cursor(current, now=now)) > int(current)  # same interval: jitter forward
    ahead = str(int(current) + 500)
    assert int(response_cursor(ahead, now=now)) > int(ahead)
    assert response_cursor("not-a-number", now=now) == current


# -- an independent client: the PyPI durable-streams package --------------------------------


async def test_python_client_catch_up_and_resume(store: Any, client: TestClient) -> None:
    await seed(store, RUN, 3)
    url = str(client.make_url("/runs/run_1"))
    async with asyncio.timeout(10):
        async with astream(url, offset="-1", live=False) as res:
            assert [e["n"] for e in await res.read_json()] == [1, 2, 3]
            resume = res.offset
        assert resume == format_offset(3)
        await store.append_events(RUN, [{"type": "log", "n": 4}])
        async with astream(url, offset=resume, live=False) as res:
            assert [e["n"] for e in await res.read_json()] == [4]


@pytest.mark.parametrize("live", ["long-poll", "sse"])
async def test_python_client_receives_live_appends(store: Any, client: TestClient, live: str) -> None:
    await seed(store, RUN, 1)
    url = str(client.make_url("/runs/run_1"))
    received: list[int] = []

    async def follow() -> None:
        async with astream(url, offset="-1", live=live) as res:  # type: ignore[arg-type]
            async for item in res.iter_json():
                received.append(item["n"])
                if len(received) == 3:
                    return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.3)
    await store.append_events(RUN, [{"type": "log", "n": 2}])
    await asyncio.sleep(0.1)
    await store.append_events(RUN, [{"type": "log", "n": 3}])
    async with asyncio.timeout(10):
        await task
    assert received == [1, 2, 3]


# -- replicas sharing PostgreSQL -------------------------------------------------------------


@pytest.mark.postgres
async def test_replicas_on_shared_postgres_see_each_others_appends() -> None:
    """Two adapters on one schema stand in for two server replicas: a reader on one sees
    appends and closure made through the other (no shared listener; the poll finds them)."""
    async with two_replicas() as (replica_a, replica_b):
        c = None
        try:
            reader = (await replica_a.connect()).streams
            writer = (await replica_b.connect()).streams
            await seed(writer, RUN, 1)
            c = await client_for(make_app(reader, poll_interval=0.1))
            long_poll = asyncio.create_task(c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
            sse_resp = await c.get(f"/runs/run_1?offset={format_offset(1)}&live=sse")
            await read_sse_until(sse_resp, lambda f: len(f) >= 1)  # the initial "up to date" control
            await writer.append_events(RUN, [{"type": "log", "n": 2}])
            async with asyncio.timeout(3):
                resp = await long_poll
            assert resp.status == 200 and [e["n"] for e in await resp.json()] == [2]
            frames = await read_sse_until(sse_resp, lambda f: len(f) >= 2, within=3)
            assert [e["n"] for e in json.loads(frames[0][1])] == [2]
            await writer.close_stream(RUN)
            frames = await read_sse_until(sse_resp, lambda f: False, within=3)
            assert json.loads(frames[-1][1])["streamClosed"] is True
        finally:
            if c is not None:
                await c.close()
