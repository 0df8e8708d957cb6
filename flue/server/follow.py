"""Follow an event stream from inside the server (WebSocket forwarding).

Reads the store directly rather than over HTTP: events are yielded with the
offset just after each one, and wake-ups come from the store's listener.
A store whose listener misses other processes' appends (another replica's
coordinator may be the one running a submission) is re-read every
``live_poll_interval`` (:func:`flue.server.streams.live_poll_interval`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from flue.persistence.base import EventStreamStore, format_offset, parse_offset
from flue.server.streams import live_poll_interval


async def follow_stream(
    store: EventStreamStore, path: str, offset: str = "-1", *, poll_interval: float | None = None
) -> AsyncIterator[tuple[dict[str, Any], str]]:
    """Yield ``(event, offset_after_event)`` from ``offset`` on, until the stream is closed
    and fully read. An open stream is followed until the caller stops iterating."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    poll = live_poll_interval(store) if poll_interval is None else poll_interval

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
                    await asyncio.wait_for(wake.wait(), poll)
    finally:
        unsubscribe()
