"""Wake stream subscribers on appends that other processes commit to the same SQLite file.

A store's own appends wake its listeners directly. Another process (a second
replica, ``flue run`` next to ``flue start``, a second adapter on the file)
fires no listener here, so live readers used to re-read every stream every
0.25 s to find such appends: with hundreds of idle readers that was most of
an idle server's CPU. Instead one watcher per store asks SQLite, every
``interval`` seconds and only while someone is subscribed, whether any other
connection committed since the last look (``PRAGMA data_version``, a counter
read without touching a table). Only then does it read the length and
closure of the subscribed streams, in one query, and wake the listeners of
those that changed. So the cost of a reader is zero while nothing happens,
and the cost of the watcher is one pragma per interval for the whole process.

No append is missed: the subscribed paths are taken together with the
pragma, after the subscriber subscribed and therefore after it last read; a
path seen for the first time is woken whenever the database changed (one
spare read at worst).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

from flue.persistence.kit import Listeners
from flue.persistence.sql.core import Op

T = TypeVar("T")

log = logging.getLogger("flue.persistence")

#: How often the watcher looks for commits by other connections (the cross-process wake-up latency).
WATCH_INTERVAL_S = 0.25
_CHUNK = 500  # paths per IN (...) query, under SQLite's variable limit



class Worker(Protocol):
    """What the SQLite adapter's connections (:class:`flue.persistence.sqlite.SQLiteWorker`) offer."""

    @property
    def shared(self) -> bool:
        """Whether other processes can write to the database (a file)."""
        ...

    #: held while a statement runs on :meth:`here`
    here_lock: threading.Lock

    def here(self) -> sqlite3.Connection:
        """The connection of the event loop's thread (whose own commits ``data_version`` ignores)."""
        ...

    def owns(self) -> bool:
        """Whether the calling thread is the one :meth:`here` belongs to."""
        ...

    def submit(self, op: Op[T], begin: str) -> asyncio.Future[T]:
        """Queue an operation for the worker thread now, in a ``begin`` transaction."""
        ...

    @property
    def checkpointing(self) -> bool:
        """A checkpoint's last step runs on the worker thread: writes go there too, behind it."""
        ...

    def committed(self) -> None:
        """A transaction committed on :meth:`here` (the worker checkpoints the WAL now and then)."""
        ...

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...


State = tuple[int, int]  # (length, closed) of a stream; (-1, -1) for a missing one


class ExternalAppendWatch:
    """Started by :meth:`ensure_started` (from ``subscribe``); stops by itself when nobody is subscribed."""

    def __init__(self, worker: Worker, listeners: Listeners, interval: float = WATCH_INTERVAL_S) -> None:
        self._db = worker
        self._listeners = listeners
        self._interval = interval
        self._task: asyncio.Task[None] | None = None
        self._version: int | None = None
        self._known: dict[str, State] = {}

    def ensure_started(self) -> None:
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no live readers to wake
        self._task = loop.create_task(self._run(), name="flue-sqlite-watch")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:  # one pragma, on the loop's connection: it counts commits of every other connection
                with self._db.here_lock:
                    changed = self._look(self._db.here())
            except RuntimeError:
                return  # the adapter was closed
            except sqlite3.Error as exc:
                log.warning("SQLite change watch failed (%s); waking every reader", exc)
                self._known.clear()
                self._listeners.notify_all()
                continue
            if changed is None:  # nobody subscribed: stop until the next subscribe
                self._known.clear()
                self._version = None
                return
            for path in changed:
                self._listeners.notify(path)

    def _look(self, conn: sqlite3.Connection) -> list[str] | None:
        """The subscribed paths whose stream changed since the last look."""
        paths = self._listeners.keys()
        if not paths:
            return None
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self._version:
            return []
        self._version = version
        states: dict[str, State] = {}
        for i in range(0, len(paths), _CHUNK):
            chunk = paths[i : i + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for path, length, closed in conn.execute(
                f"SELECT path, length, closed FROM flue_streams WHERE path IN ({marks})", chunk
            ):
                states[path] = (length, closed)
        changed = []
        known: dict[str, State] = {}
        for path in paths:
            state = states.get(path, (-1, -1))
            if self._known.get(path) != state:
                changed.append(path)
            known[path] = state
        self._known = known  # forget streams nobody reads any more
        return changed

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimeError):
                await task
