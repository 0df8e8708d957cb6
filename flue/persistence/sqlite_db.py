"""SQLite as a dialect of the SQL core plus its connection handling (see :mod:`flue.persistence.sql`).

An operation runs on the event loop's thread, on the adapter's connection
there (:meth:`~flue.persistence.sqlite.SQLiteWorker.here`), driven
synchronously: a transaction never waits on the event loop, and costs no
thread handoff. That connection never waits for a lock: when another
connection (another process, another adapter) holds the database, the
operation goes, untouched or from the statement that found the lock, to the
worker thread, which waits with the busy timeout. ``Mode.SNAPSHOT`` reads of
a file (stream reads, which can be large) run on the worker thread. SQLite
has no row locks:
``Mode.TRANSACTION`` and ``Mode.WRITE`` are ``BEGIN IMMEDIATE``, which takes
the database's write lock before the first read, so "find the head, check it,
update it" cannot interleave with another writer -- in this process (one thread
serializes everything) or in another process sharing the file (SQLite's lock
serializes the transactions). Other processes' appends are found by
:class:`~flue.persistence.sqlite_watch.ExternalAppendWatch`.
"""

from __future__ import annotations

import sqlite3
from typing import Any, TypeVar

from flue.persistence.kit import Listeners
from flue.persistence.sql.core import Dialect, Kind, Mode, Op, Steps, Stmt, execute_step, run_dbapi
from flue.persistence.sqlite_watch import ExternalAppendWatch, Worker


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock this one would have had to wait for."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

T = TypeVar("T")


class SQLiteDialect(Dialect):
    """The core's default spelling is SQLite's: ``?``, no prefix, no row locks, JSON as text."""


_BEGIN = {Mode.READ: None, Mode.SNAPSHOT: "BEGIN", Mode.WRITE: "BEGIN IMMEDIATE", Mode.TRANSACTION: "BEGIN IMMEDIATE"}


class SQLiteDatabase:
    dialect: Dialect = SQLiteDialect()

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def run(self, op: Op[T], mode: Mode) -> T:
        worker = self._worker
        begin = _BEGIN[mode]
        if mode is Mode.SNAPSHOT and worker.shared:
            return await worker.read(lambda conn: run_dbapi(conn.cursor(), op))
        if begin is not None and worker.checkpointing:
            return await worker.write(lambda c: run_dbapi(c.cursor(), op))
        conn = worker.here()
        if begin is not None:
            try:
                conn.execute(begin)
            except sqlite3.OperationalError as exc:
                if not (is_busy(exc) and worker.shared):
                    raise
                return await worker.write(lambda c: run_dbapi(c.cursor(), op))  # nothing ran yet
        steps = Steps(op)
        cursor = conn.cursor()
        step: Any = None
        try:
            for step in steps:
                if isinstance(step, Stmt):
                    steps.rows = execute_step(cursor, step)
            if begin is not None:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if begin is None and is_busy(exc) and worker.shared:  # a read: go on from this statement there
                return await worker.run(lambda c: _resume(c.cursor(), steps, step))
            steps.close()
            raise
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            steps.close()
            raise
        if begin is not None:
            worker.committed()
        return steps.result


def _resume(cursor: sqlite3.Cursor, steps: Steps, pending: Stmt) -> Any:
    """Drive the rest of a read whose statement ``pending`` found the database locked."""
    try:
        steps.rows = execute_step(cursor, pending)
        for step in steps:
            if isinstance(step, Stmt):
                steps.rows = execute_step(cursor, step)
    finally:
        steps.close()
    return steps.result


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
