"""Append events to one durable stream in emission order.

Subscribed synchronously to an EventSink, so it never reorders events; bursts
(text deltas) are coalesced into one ``append_events`` call per flush. Events
that never go to durable streams (``turn_request``, see ``flue.events``) are
declined through ``skip_types``, so they are not even built for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flue.events import STREAM_EXCLUDED, FlueEvent
from flue.persistence.base import EventStreamStore


class StreamWriter:
    skip_types = STREAM_EXCLUDED

    def __init__(self, store: EventStreamStore, path: str):
        self.store = store
        self.path = path
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._kicked = False  # a flush is scheduled for the loop's next round
        self._held = False
        self.error: BaseException | None = None

    def __call__(self, event: FlueEvent) -> None:
        if event.type in STREAM_EXCLUDED:
            return
        self._buffer.append(event.wire())
        if not self._held and not self._kicked and (self._task is None or self._task.done()):
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        # A task only if the events are still waiting then: a burst is one append, and events
        # taken meanwhile (hold/take: a run's or a submission's last ones) cost no task at all.
        self._kicked = False
        if self._buffer and not self._held and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def hold(self) -> None:
        """Keep what comes next in the buffer for :meth:`take` (the last events of a stream,
        written by the store in the transaction that closes it)."""
        self._held = True

    async def take(self) -> list[dict[str, Any]]:
        """Wait for the flush in progress, then hand over (and forget) the events not yet written."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        taken, self._buffer = self._buffer, []
        return taken

    async def _flush(self) -> None:
        while self._buffer and not self._held:
            batch, self._buffer = self._buffer, []
            try:
                await self.store.append_events(self.path, batch)
            except Exception as exc:  # keep going: the run must not die of its log
                self.error = exc

    async def drain(self) -> None:
        """Wait until every event handed to the writer is in the store."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._buffer:
            await self._flush()
