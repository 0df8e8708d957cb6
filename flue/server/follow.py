"""Follow an event stream from inside the server (WebSocket forwarding).

Reads the store directly rather than over HTTP: events are yielded with the
offset just after each one, wake-ups come from the store's listener (appends
made through this process), and a periodic re-read picks up appends made by
other processes sharing the database (another replica's coordinator may be
the one running a submission).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from flue.persistence.base import EventStreamStore, format_offset, parse_offset

POLL_INTERVAL = 0.25


async def follow_stream(
    store: EventStreamStore, path: str, offset: str = "-1", *, poll_interval: float = POLL_INTERVAL
) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """Yield ``(event, offset_after_event)`` from ``offset`` on, until the stream is closed
    and fully read. An open stream is followed until the caller stops iterating."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def on_append(_path: str) -> None:
        loop.call_soon_threadsafe(wake.set)

    unsubscribe = store.subscribe(path, on_append)
    try:
        while True:
            wake.clear()  # before the read, so an append during it is not missed
            result = await store.read_events(path, offset)
            seq = parse_offset(offset)
            for i, event in enumerate(result.events, start=1):
                yield event, format_offset(seq + i)
            offset = result.next_offset
            if result.closed and result.up_to_date:
                return
            if not result.events:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), poll_interval)
    finally:
        unsubscribe()
