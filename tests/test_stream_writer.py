"""The stream writer's linger: an agent attempt's last events wait for its settlement.

Events up to an ``idle`` are not flushed at once: the settlement (or a run's
end) that usually follows takes them into its own transaction. Whatever comes
after the idle, or ``LINGER_S`` passing, writes them as usual, and ``drain``
writes them at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from fixtures.server.support import until

from flue.events import Idle, TextDelta
from flue.persistence.base import EventStreamStore
from flue.persistence.sqlite import SQLiteAdapter
from flue.runtime import stream_writer
from flue.runtime.stream_writer import OPERATION_END, StreamWriter

PATH = "agents/a/1"


@pytest.fixture
async def streams() -> AsyncIterator[EventStreamStore]:
    adapter = SQLiteAdapter()
    await adapter.migrate()
    streams = (await adapter.connect()).streams
    await streams.create_stream(PATH)  # as an admission does
    yield streams
    await adapter.close()


async def stored(streams: EventStreamStore) -> list[str]:
    return [e["type"] for e in (await streams.read_events(PATH)).events]


async def until_stored(streams: EventStreamStore, types: list[str]) -> None:
    """Wait (bounded) until the stream holds events of exactly ``types`` (the writer has no
    completion signal to wait on)."""
    async def holds() -> bool:
        return await stored(streams) == types

    await until(holds, timeout=5)


async def settle_rounds(n: int = 5) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_events_up_to_an_idle_wait_for_take(streams: EventStreamStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_writer, "LINGER_S", 30.0)
    writer = StreamWriter(streams, PATH, linger_after=OPERATION_END)
    writer(TextDelta(text="a"))
    writer(Idle())
    await settle_rounds()
    assert await stored(streams) == []  # neither went alone: the settlement takes both
    writer.hold()
    assert [e["type"] for e in await writer.take()] == ["text_delta", "idle"]


async def test_an_event_after_the_idle_writes_it_at_once(streams: EventStreamStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_writer, "LINGER_S", 30.0)
    writer = StreamWriter(streams, PATH, linger_after=OPERATION_END)
    writer(Idle())  # a sub-agent's, say: the parent goes on
    await settle_rounds()
    writer(TextDelta(text="b"))
    await until_stored(streams, ["idle", "text_delta"])


async def test_lingering_events_are_written_when_nothing_follows(streams: EventStreamStore,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream_writer, "LINGER_S", 0.05)
    writer = StreamWriter(streams, PATH, linger_after=OPERATION_END)
    writer(TextDelta(text="a"))
    writer(Idle())
    await until_stored(streams, ["text_delta", "idle"])


async def test_drain_writes_lingering_events_and_a_plain_writer_never_lingers(
    streams: EventStreamStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_writer, "LINGER_S", 30.0)
    writer = StreamWriter(streams, PATH, linger_after=OPERATION_END)
    writer(Idle())
    await writer.drain()
    assert await stored(streams) == ["idle"]

    plain = StreamWriter(streams, PATH)
    plain(Idle())
    await until_stored(streams, ["idle", "idle"])
