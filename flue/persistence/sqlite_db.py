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

import asyncio
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flue.persistence.kit import Listeners
from flue.persistence.sql.core import (
    Dialect,
    Kind,
    Mode,
    Op,
    Steps,
    Stmt,
    drive_steps,
    execute_step,
    run_dbapi,
)
from flue.persistence.sqlite_watch import ExternalAppendWatch, Worker

T = TypeVar("T")


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says another connection holds a lock this one would have had to wait for."""
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
    """``fn(conn)`` between ``begin`` and ``COMMIT`` (rolled back if it raises)."""
    conn.execute(begin)
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def settle_future(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Hand a finished operation's outcome to its caller's future (gone if the caller was cancelled:
    the operation ran anyway)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SQLiteDialect(Dialect):
    """The core's default spelling is SQLite's: ``?``, no prefix, no row locks, JSON as text."""


class SQLiteDatabase:
    """Operations on the adapter's connections. A write runs at once, in its own transaction.

    :meth:`run_batched` writes share commits when they come together: each waits for the end
    of the event-loop iteration, and the writes queued by then run in one transaction, each
    inside a savepoint of its own (one that raises is rolled back alone). Every caller hears
    back only after the commit that holds its write. A write that runs at once (:meth:`run`)
    takes the batch waiting so far into its own transaction, ahead of it. The SQL core's run
    store uses it to open and close workflow runs (a run without a model call is little more
    than those two writes, and concurrent runs then share a commit: about a quarter less CPU
    per run) and its stream store for appends (a prompt's events mostly go along with its
    journal, session or settlement write). Other writes do not: waiting for the iteration's
    end made agent prompts slower than their commits cost.
    """

    dialect: Dialect = SQLiteDialect()

    def __init__(self, worker: Worker) -> None:
        self._worker = worker
        self._batch: list[tuple[Op[Any], asyncio.Future[Any]]] = []

    async def run(self, op: Op[T], mode: Mode) -> T:
        worker = self._worker
        if worker.shared and (mode is Mode.SNAPSHOT or not worker.owns()):
            if mode is Mode.READ:
                return await worker.run(lambda c: run_dbapi(c.cursor(), op))
            return await worker.submit(op, "BEGIN" if mode is Mode.SNAPSHOT else "BEGIN IMMEDIATE")
        if mode is Mode.READ:
            return await self._read(op)
        if mode is Mode.SNAPSHOT or not worker.owns():  # in memory: one connection for every thread
            with worker.here_lock:
                return transaction(worker.here(), lambda c: run_dbapi(c.cursor(), op),
                                   "BEGIN" if mode is Mode.SNAPSHOT else "BEGIN IMMEDIATE")
        batch, self._batch = self._batch, []  # writes waiting for the iteration's end go along now
        outcomes = self._commit([*(o for o, _f in batch), op])
        if outcomes is None:
            for queued, future in batch:
                _chain(worker.submit(queued, "BEGIN IMMEDIATE"), future)
            return await worker.submit(op, "BEGIN IMMEDIATE")  # not run: the thread waits for the lock
        for (_op, future), (result, error) in zip(batch, outcomes[:-1], strict=True):
            settle_future(future, result, error)
        result, error = outcomes[-1]
        if error is not None:
            raise error
        return cast(T, result)

    async def run_batched(self, op: Op[T], mode: Mode) -> T:
        """``run`` a write (``Mode.WRITE`` or ``Mode.TRANSACTION``) in the loop iteration's batch."""
        if mode in (Mode.READ, Mode.SNAPSHOT) or not self._worker.owns():
            return await self.run(op, mode)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._batch.append((op, future))
        if len(self._batch) == 1:
            loop.call_soon(self._flush)
        # if the caller is cancelled meanwhile, its operation still runs (and commits) with the batch
        return await future

    async def _read(self, op: Op[T]) -> T:
        worker = self._worker
        steps = Steps(op)
        with worker.here_lock:
            try:
                return cast(T, drive_steps(worker.here().cursor(), steps))
            except sqlite3.OperationalError as exc:
                if not (worker.shared and is_busy(exc)):
                    steps.close()
                    raise
            except BaseException:
                steps.close()
                raise
        # the database was locked (another process closing it, say): go on from that statement there
        return await worker.run(lambda c: _resume(c.cursor(), steps))

    def _commit(self, ops: list[Op[Any]]) -> list[tuple[Any, BaseException | None]] | None:
        """Run ``ops`` in one transaction on the loop's connection: (result, error) of each, or None
        (nothing ran) when the database is held elsewhere or a WAL checkpoint is running."""
        worker = self._worker
        with worker.here_lock:
            conn = worker.here()
            if worker.shared and worker.checkpointing:
                return None  # queue behind the checkpoint on the thread
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if worker.shared and is_busy(exc):
                    return None  # another connection holds the database: the thread waits for it
                raise
            outcomes = _run_batch(conn, ops)
            worker.committed()
            return outcomes

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:  # a direct write took it along already
            return
        try:
            outcomes = self._commit([op for op, _future in batch])
        except BaseException as exc:  # the adapter was closed, the disk failed...: nothing was stored
            outcomes = [(None, exc) for _ in batch]
        if outcomes is None:
            for op, future in batch:
                _chain(self._worker.submit(op, "BEGIN IMMEDIATE"), future)
            return
        for (_op, future), (result, error) in zip(batch, outcomes, strict=True):
            settle_future(future, result, error)


def _run_batch(conn: sqlite3.Connection, ops: list[Op[Any]]) -> list[tuple[Any, BaseException | None]]:
    """Run ``ops`` in the transaction just begun, each in a savepoint when there are several,
    and commit (everything rolled back, every op failed, if the commit fails)."""
    cursor = conn.cursor()
    single = len(ops) == 1
    outcomes: list[tuple[Any, BaseException | None]] = []
    for op in ops:
        if not single:
            conn.execute("SAVEPOINT op")
        try:
            result = run_dbapi(cursor, op)
        except BaseException as exc:  # handed to its caller; the batch goes on without it
            conn.execute("ROLLBACK" if single else "ROLLBACK TO op")
            if not single:
                conn.execute("RELEASE op")
            outcomes.append((None, exc))
            continue
        if not single:
            conn.execute("RELEASE op")
        outcomes.append((result, None))
    if conn.in_transaction:
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(None, exc) for _ in outcomes]
    return outcomes


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any]) -> None:
    def copy(done: asyncio.Future[Any]) -> None:
        if done.cancelled():
            target.cancel()
        else:
            settle_future(target, None if done.exception() else done.result(), done.exception())

    source.add_done_callback(copy)


def _resume(cursor: sqlite3.Cursor, steps: Steps) -> Any:
    """Drive the rest of a read from its statement that found the database locked."""
    try:
        assert isinstance(steps.current, Stmt)
        steps.rows = execute_step(cursor, steps.current)
        return drive_steps(cursor, steps)
    finally:
        steps.close()


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
