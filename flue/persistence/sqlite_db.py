"""SQLite as a dialect of the SQL core plus its connection handling (see :mod:`flue.persistence.sql`).

Every operation runs as one job on the adapter's worker thread
(:class:`~flue.persistence.sqlite.SQLiteWorker`), driven synchronously there,
so a transaction never waits on the event loop. SQLite has no row locks:
``Mode.TRANSACTION`` and ``Mode.WRITE`` are ``BEGIN IMMEDIATE``, which takes
the database's write lock before the first read, so "find the head, check it,
update it" cannot interleave with another writer -- in this process (one thread
serializes everything) or in another process sharing the file (SQLite's lock
serializes the transactions). Other processes' appends are found by
:class:`~flue.persistence.sqlite_watch.ExternalAppendWatch`.
"""

from __future__ import annotations

import sqlite3
from typing import TypeVar

from flue.persistence.kit import Listeners
from flue.persistence.sql.core import Dialect, Kind, Mode, Op, run_dbapi
from flue.persistence.sqlite_watch import ExternalAppendWatch, Worker

T = TypeVar("T")


class SQLiteDialect(Dialect):
    """The core's default spelling is SQLite's: ``?``, no prefix, no row locks, JSON as text."""


class SQLiteDatabase:
    dialect: Dialect = SQLiteDialect()

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def run(self, op: Op[T], mode: Mode) -> T:
        def job(conn: sqlite3.Connection) -> T:
            return run_dbapi(conn.cursor(), op)

        if mode is Mode.READ:
            return await self._worker.run(job)
        if mode is Mode.SNAPSHOT:
            return await self._worker.read(job)
        return await self._worker.write(job)


class SQLiteChanges:
    """Other processes' appends to a shared file wake stream subscribers through ``PRAGMA data_version``;
    submission subscribers are not followed across processes (coordinators also poll)."""

    #: Live readers need not re-read on a timer: ``subscribe`` reports every append, this
    #: process's directly and other processes' through :mod:`flue.persistence.sqlite_watch`.
    live_poll_interval: float | None = None

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._watch: ExternalAppendWatch | None = None

    def follow(self, kind: Kind, listeners: Listeners) -> None:
        # a file can be shared with other processes, whose appends fire no listener here
        if kind == "s" and self._worker.shared:
            self._watch = ExternalAppendWatch(self._worker, listeners)

    def ensure_started(self, kind: Kind) -> None:
        if kind == "s" and self._watch is not None:
            self._watch.ensure_started()

    async def close(self) -> None:
        """Stop watching for other processes' appends (the adapter's ``close`` calls this)."""
        if self._watch is not None:
            await self._watch.close()
