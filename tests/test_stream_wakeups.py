"""Live readers are woken by appends, not by timers (issue 19: idle readers cost ~nothing).

The read path is mounted with no ``poll_interval``, so it uses the store's own
setting: the built-in stores say readers need no timer. A second SQLite adapter
on the same file stands in for another server process (its appends fire no
listener here: only the change watch can find them). What idle readers cost in
CPU is measured by benchmarks/idle_readers.py, not here.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fixtures.postgres import two_replicas
from test_server_streams import RUN, client_for, make_app, read_sse_until, seed

from flue.persistence.base import format_offset
from flue.persistence.sqlite import SQLiteAdapter
from flue.server.streams import live_poll_interval


async def test_built_in_stores_need_no_reader_timer(tmp_path: Path) -> None:
    for adapter in (SQLiteAdapter(), SQLiteAdapter(tmp_path / "f.db")):
        await adapter.migrate()
        assert live_poll_interval((await adapter.connect()).streams) is None
        await adapter.close()


async def test_another_process_appends_wake_long_poll_and_sse_readers(tmp_path: Path) -> None:
    db = tmp_path / "flue.db"
    reader_side, writer_side = SQLiteAdapter(db), SQLiteAdapter(db)
    await reader_side.migrate()
    reader = (await reader_side.connect()).streams
    writer = (await writer_side.connect()).streams
    await seed(writer, RUN, 1)
    c = await client_for(make_app(reader, long_poll_timeout=20.0, poll_interval=None))
    try:
        long_poll = asyncio.create_task(c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
        sse_resp = await c.get(f"/runs/run_1?offset={format_offset(1)}&live=sse")
        await read_sse_until(sse_resp, lambda f: len(f) >= 1)  # the first "up to date" control frame
        await asyncio.sleep(0.6)  # the watch has looked at least once: the append below is news to it
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
        await c.close()
        await reader_side.close()
        await writer_side.close()


async def test_a_reader_whose_client_left_unsubscribes_without_any_append(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "flue.db")
    await adapter.migrate()
    store = (await adapter.connect()).streams
    await seed(store, RUN, 1)
    c = await client_for(make_app(store, long_poll_timeout=30.0, poll_interval=None))
    try:
        read = asyncio.create_task(c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
        async with asyncio.timeout(3):
            while RUN not in store._listeners.keys():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        read.cancel()  # the client goes away mid-wait
        async with asyncio.timeout(5):
            while RUN in store._listeners.keys():  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        await c.close()
        await adapter.close()


async def test_postgres_replicas_wake_each_others_readers_with_no_reader_timer() -> None:
    async with two_replicas() as (replica_a, replica_b):
        c = None
        try:
            reader = (await replica_a.connect()).streams
            writer = (await replica_b.connect()).streams
            await seed(writer, RUN, 1)
            async with asyncio.timeout(5):
                await replica_a.listening()
            assert live_poll_interval(reader) is None
            c = await client_for(make_app(reader, long_poll_timeout=20.0, poll_interval=None))
            long_poll = asyncio.create_task(c.get(f"/runs/run_1?offset={format_offset(1)}&live=long-poll"))
            await asyncio.sleep(0.3)
            await writer.append_events(RUN, [{"type": "log", "n": 2}])
            async with asyncio.timeout(3):
                resp = await long_poll
            assert resp.status == 200 and [e["n"] for e in await resp.json()] == [2]
        finally:
            if c is not None:
                await c.close()
