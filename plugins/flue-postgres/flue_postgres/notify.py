"""Cross-replica wake-ups over PostgreSQL ``LISTEN``/``NOTIFY``.

Stores call :meth:`Notifier.send` inside their write transaction (PostgreSQL
delivers the notification at commit, never for a rolled-back write). One
background task per adapter holds a dedicated connection that ``LISTEN``\\s
and hands each notification to the local listeners, so a long-poll reader on
replica B wakes when replica A appends, without waiting for its next poll.

Notifications sent while nobody listens are lost. So when the listening
connection comes back after a failure, each kind's handler is called with the
empty key, "anything may have changed" (a key too long for a payload is sent
empty too), and until the first ``LISTEN`` is active :attr:`Notifier.listening`
is false: readers that start then poll (``PgChanges.live_poll_interval``).
The task starts on the first ``subscribe`` and stops on ``adapter.close()``.
A replica ignores its own notifications; its stores already woke local
listeners directly.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

log = logging.getLogger("flue_postgres")
MAX_PAYLOAD = 7900  # PostgreSQL's limit is 8000 bytes
RECONNECT_DELAY_S = 1.0


class Notifier:
    def __init__(self, conninfo: str, schema: str, connect_timeout: float = 10.0) -> None:
        self._conninfo = conninfo
        self._connect_timeout = connect_timeout
        # A channel per schema, hashed because identifiers stop at 63 bytes.
        self.channel = "flue_" + hashlib.sha1(schema.encode()).hexdigest()[:24]
        self.origin = uuid.uuid4().hex[:12]
        self._handlers: dict[str, Callable[[str], None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._closed = False
        self._listened = False

    @property
    def listening(self) -> bool:
        """Whether other replicas' notifications reach this process now."""
        return self._ready is not None and self._ready.is_set()

    def on(self, kind: str, handler: Callable[[str], None]) -> None:
        self._handlers[kind] = handler

    async def send(self, conn: psycopg.AsyncConnection[Any], kind: str, key: str) -> None:
        payload = f"{self.origin}|{kind}|{key}"
        if len(payload.encode()) > MAX_PAYLOAD:
            payload = f"{self.origin}|{kind}|"  # "wake every listener of this kind"
        await conn.execute("SELECT pg_notify(%s, %s)", (self.channel, payload))

    def ensure_started(self) -> None:
        """Start listening in the background (needs a running event loop; a no-op without one)."""
        if self._task is not None or self._closed:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._ready = asyncio.Event()
        self._task = loop.create_task(self._listen(), name=f"flue-postgres-listen-{self.channel}")

    async def wait_listening(self) -> None:
        self.ensure_started()
        if self._ready is None:
            raise RuntimeError("the notifier is closed")
        await self._ready.wait()

    async def _listen(self) -> None:
        assert self._ready is not None
        while not self._closed:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
                )
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    self._ready.set()
                    if self._listened:
                        self._resync()  # back after a failure: wake everyone for what was missed
                    self._listened = True
                    async for note in conn.notifies():
                        self._dispatch(note.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._ready.clear()
                log.warning("flue-postgres: LISTEN connection failed (%s); retrying", exc)
                await asyncio.sleep(RECONNECT_DELAY_S)

    def _resync(self) -> None:
        """Listening (again): what was sent while nobody listened is lost, so wake everyone."""
        for handler in list(self._handlers.values()):
            try:
                handler("")
            except Exception:
                log.exception("flue-postgres: wake-up handler failed")

    def _dispatch(self, payload: str) -> None:
        origin, _, rest = payload.partition("|")
        kind, _, key = rest.partition("|")
        if origin == self.origin:
            return
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(key)

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        else:
            task.get_loop().call_soon_threadsafe(task.cancel)
