"""Append events to one durable stream in emission order.

Subscribed synchronously to an EventSink, so it never reorders events; bursts
(text deltas) are coalesced into one ``append_events`` call per flush. Events
that never go to durable streams (``turn_request``, see ``flue.events``) are
declined through ``skip_types``, so they are not even built for it.

An event named in ``linger_after`` (an operation's ``idle``) waits up to
``LINGER_S`` for the next event before it is written: an agent's last events
are then taken by the settlement (or a run's end) that follows at once, and
go into its transaction instead of a commit of their own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from flue.events import STREAM_EXCLUDED, FlueEvent
from flue.persistence.base import EventStreamStore

LINGER_S = 0.05
#: The events after which an agent attempt or a run usually ends (its operation is done).
OPERATION_END = frozenset({"idle"})


class StreamWriter:
    skip_types = STREAM_EXCLUDED

    def __init__(self, store: EventStreamStore, path: str, *, linger_after: frozenset[str] = frozenset()):
        self.store = store
        self.path = path
        self._buffer: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._kicked = False  # a flush is scheduled for the loop's next round
        self._held = False
        self._linger_after = linger_after
        self._lingering: asyncio.TimerHandle | None = None  # the buffer waits for what follows
        self.error: BaseException | None = None

    def __call__(self, event: FlueEvent) -> None:
        if event.type in STREAM_EXCLUDED:
            return
        self._buffer.append(event.wire())
        if self._held:
            return
        if event.type in self._linger_after:
            if self._lingering is None:
                self._lingering = asyncio.get_running_loop().call_later(LINGER_S, self._linger_done)
            return
        self._stop_lingering()
        if not self._kicked and (self._task is None or self._task.done()):
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        # A task only if the events are still waiting then: a burst is one append, and events
        # taken meanwhile (hold/take: a run's or a submission's last ones) cost no task at all.
        self._kicked = False
        if self._buffer and not self._held and self._lingering is None and (self._task is None or self._task.done()):
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def _linger_done(self) -> None:
        self._lingering = None
        self._kick()

    def _stop_lingering(self) -> None:
        if self._lingering is not None:
            self._lingering.cancel()
            self._lingering = None

    def hold(self) -> None:
        """Keep what comes next in the buffer for :meth:`take` (the last events of a stream,
        written by the store in the transaction that closes it)."""
        self._held = True
        self._stop_lingering()

    async def take(self) -> list[dict[str, Any]]:
        """Wait for the flush in progress, then hand over (and forget) the events not yet written."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        taken, self._buffer = self._buffer, []
        return taken

    async def _flush(self) -> None:
        while self._buffer and not self._held and self._lingering is None:
            batch, self._buffer = self._buffer, []
            try:
                await self.store.append_events(self.path, batch)
            except Exception as exc:  # keep going: the run must not die of its log
                self.error = exc

    async def drain(self) -> None:
        """Wait until every event handed to the writer is in the store."""
        self._stop_lingering()
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)
        if self._buffer:
            await self._flush()
