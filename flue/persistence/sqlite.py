"""The built-in persistence adapter: SQLite from the standard library.

``SQLiteAdapter()`` (or ``path=":memory:"``) keeps state for the process
lifetime; ``SQLiteAdapter("state.db")`` survives restarts on one host (WAL
journal, ``synchronous=NORMAL``).

Threading: statements run on the event loop's thread, on a connection of
their own, without a thread handoff: a short SQLite transaction costs less
than handing it to a thread and back (which took more CPU than the
statements, and a GIL switch each way). What could block the loop does not
run there: the connection never waits for a lock (a database another
connection holds is handed, untouched, to the adapter's worker thread, which
waits for it with the busy timeout), WAL checkpoints (their fsync) run on the
worker thread (writes made meanwhile queue behind them there), and so do multi-statement stream reads (``Mode.SNAPSHOT``, the
reads that can be large). An in-memory database has one connection, on the
loop's thread. Writes use ``BEGIN IMMEDIATE`` transactions: they take
SQLite's write lock up front, which makes read-check-write sequences
(claims, admission, appends) atomic even when several processes or adapters
open the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from flue.persistence.base import SCHEMA_VERSION
from flue.persistence.kit import check_schema_version
from flue.persistence.sql import SQLStores, open_stores
from flue.persistence.sql.core import Op, run_dbapi
from flue.persistence.sqlite_db import SQLiteChanges, SQLiteDatabase, settle_future, transaction

T = TypeVar("T")

# Schema version 1. Integer epoch milliseconds (``*_ms``) are what queries
# compare; ISO strings are kept only where a caller supplied them.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS flue_sessions (
    key TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flue_runs (
    run_id TEXT PRIMARY KEY,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    result TEXT,
    error TEXT,
    started_at TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_at TEXT,
    duration_ms REAL,
    owner TEXT,               -- who runs it (an active run), NULL once ended or when created without one
    lease_expires_ms INTEGER  -- the end of the owner's lease: past it the run was interrupted
);
CREATE INDEX IF NOT EXISTS flue_runs_newest ON flue_runs (started_ms DESC, run_id DESC);
CREATE TABLE IF NOT EXISTS flue_streams (
    path TEXT PRIMARY KEY,
    length INTEGER NOT NULL DEFAULT 0,
    closed INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS flue_events (
    path TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (path, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flue_snapshots (
    scope TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS flue_instances (
    instance TEXT PRIMARY KEY,
    next_seq INTEGER NOT NULL,
    head_seq INTEGER,  -- seq of the lowest queued/running submission, NULL when idle
    head_ms INTEGER    -- its accepted_ms: claims take the oldest head first
);
CREATE INDEX IF NOT EXISTS flue_instances_busy ON flue_instances (head_ms, instance) WHERE head_seq IS NOT NULL;
CREATE TABLE IF NOT EXISTS flue_submissions (
    submission_id TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    dispatch_id TEXT UNIQUE,
    input TEXT NOT NULL,
    input_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    accepted_ms INTEGER NOT NULL,
    deadline_ms INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_ms INTEGER,
    settled_ms INTEGER,
    result TEXT,
    error TEXT,
    UNIQUE (instance, seq)
);
CREATE INDEX IF NOT EXISTS flue_submissions_active
    ON flue_submissions (instance, seq) WHERE status IN ('queued', 'running');
CREATE TABLE IF NOT EXISTS flue_journal (
    submission_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    entry TEXT NOT NULL,
    recorded_ms INTEGER NOT NULL,
    PRIMARY KEY (submission_id, seq)
) WITHOUT ROWID;
"""


#: Commits on the loop's connection between two WAL checkpoints on the worker thread (SQLite's
#: own automatic checkpoint, every 1,000 pages, would run -- and fsync -- inside a loop commit).
CHECKPOINT_EVERY = 200


class SQLiteWorker:
    """The adapter's connections: one on the event loop's thread (:meth:`here`), and for a file
    one more on a worker thread (:meth:`run`) for what must not block the loop.

    Jobs go to the thread through a queue and come back as the result of an asyncio
    future; results of jobs that ran back to back are handed to the loop together
    (one wake-up). An in-memory database has only the loop's connection: ``run`` calls
    it in place.
    """

    def __init__(self, path: Path | None, busy_timeout_s: float) -> None:
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._here: sqlite3.Connection | None = None
        self._here_thread: int | None = None
        #: held while a statement runs on ``here`` (an in-memory database has no other connection)
        self.here_lock = threading.Lock()
        self._commits = 0
        self._checkpointing = False  # the loop's writes wait on the thread (a checkpoint's last step)
        self._checkpoint_due = False  # a checkpoint is queued or running

    @property
    def shared(self) -> bool:
        """Whether other processes can write to this database (a file; ``:memory:`` is ours alone)."""
        return self._path is not None

    def here(self) -> sqlite3.Connection:
        """The connection for statements run on the event loop's thread (the first thread that
        asks; see :meth:`owns`). It never waits for a lock: a locked database raises at once
        (see :func:`~flue.persistence.sqlite_db.is_busy`)."""
        if self._closed:
            raise RuntimeError("the SQLite persistence adapter is closed")
        if self._here is None:
            self._here = self._open(busy_timeout_s=0.0, checkpoints=self._path is None)
            self._here_thread = threading.get_ident()
        return self._here

    def owns(self) -> bool:
        """Whether the calling thread is the one whose connection :meth:`here` is (or would be).
        Another thread's event loop (an adapter shared across threads) uses the worker thread."""
        return self._here_thread is None or self._here_thread == threading.get_ident()

    @property
    def checkpointing(self) -> bool:
        """A checkpoint's last step (``RESTART``) is running on the thread: writes go there too, behind it."""
        return self._checkpointing

    def committed(self) -> None:
        """A transaction committed on :meth:`here`: every CHECKPOINT_EVERY, checkpoint the WAL on the thread."""
        self._commits += 1
        if self._path is None or self._checkpoint_due or self._commits < CHECKPOINT_EVERY:
            return
        self._commits, self._checkpoint_due = 0, True

        def checkpoint(conn: sqlite3.Connection) -> None:
            # PASSIVE first, while the loop goes on writing: it copies and syncs nearly everything.
            # Then, with the loop's writes held here behind it (``checkpointing``), RESTART copies
            # what came meanwhile; finding no writer, it lets the WAL start from its beginning again
            # (a PASSIVE one alone never catches up with a busy loop).
            try:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self._checkpointing = True
                conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                self._checkpointing = self._checkpoint_due = False

        with contextlib.suppress(RuntimeError):  # no running loop (a synchronous caller): skip this one
            self._enqueue(checkpoint, asyncio.get_running_loop())

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the SQLite persistence adapter is closed")
        if self._path is None:
            return fn(self.here())
        loop = asyncio.get_running_loop()
        # If the awaiting task is cancelled the job still finishes on the thread,
        # so a transaction is never left half-done.
        return await self._enqueue(fn, loop)

    def _enqueue(self, fn: Callable[[sqlite3.Connection], T], loop: asyncio.AbstractEventLoop) -> asyncio.Future[T]:
        if self._thread is None:
            self._start()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, loop, future))
        return future

    def submit(self, op: Op[T], begin: str) -> asyncio.Future[T]:
        """Queue ``op`` for the thread now (in call order), in a ``begin`` transaction; its future."""
        return self._enqueue(lambda conn: transaction(conn, lambda c: run_dbapi(c.cursor(), op), begin),
                             asyncio.get_running_loop())

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        return await self.run(lambda conn: transaction(conn, fn, "BEGIN IMMEDIATE"))

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` inside a read transaction so multi-statement reads see one snapshot."""
        return await self.run(lambda conn: transaction(conn, fn, "BEGIN"))

    def _start(self) -> None:
        # The thread holds the worker only weakly: an adapter dropped without close() lets its
        # thread end (and its connection close), as ThreadPoolExecutor's threads do.
        jobs = self._jobs
        thread = threading.Thread(target=_serve, args=(jobs, weakref.ref(self)), name="flue-sqlite", daemon=True)
        self._thread = thread
        thread.start()
        weakref.finalize(self, jobs.put, None)
        # Like ThreadPoolExecutor's threads: at interpreter exit, finish what is queued first.
        with contextlib.suppress(AttributeError, RuntimeError):
            threading._register_atexit(functools.partial(_finish_at_exit, weakref.ref(thread), jobs))  # type: ignore[attr-defined]

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            self._conn = self._open(busy_timeout_s=self._busy_timeout_s, checkpoints=True)
        return fn(self._conn)

    def _open(self, *, busy_timeout_s: float, checkpoints: bool) -> sqlite3.Connection:
        if self._path is None:
            conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        else:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_s)
            conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL is crash-safe for the database (a power cut may
            # lose the last transactions, never corrupt).
            conn.execute("PRAGMA synchronous=NORMAL")
            if not checkpoints:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # committed() has the thread do them
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        here, self._here = self._here, None
        if here is not None:
            here.close()
        if self._thread is None:  # never used: nothing to close
            return

        def shut(conn: sqlite3.Connection) -> None:
            conn.close()
            self._conn = None

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._jobs.put((shut, loop, future))  # after everything queued before it
        self._jobs.put(None)
        await future


_Job = tuple[Callable[[sqlite3.Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _serve(jobs: queue.SimpleQueue[_Job | None], worker: weakref.ref[SQLiteWorker]) -> None:
    """The worker thread: run jobs in order; hand back the results of a run of queued jobs at once."""
    while True:
        job = jobs.get()
        done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]] = []
        while job is not None:
            fn, loop, future = job
            owner = worker()
            try:
                if owner is None:
                    raise RuntimeError("the SQLite persistence adapter is gone")
                done.append((loop, future, owner._call(fn), None))
            except BaseException as exc:  # handed to the awaiting task
                done.append((loop, future, None, exc))
            del owner
            try:
                job = jobs.get_nowait()
            except queue.Empty:
                break
        for loop in {entry[0] for entry in done}:
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody awaits
                loop.call_soon_threadsafe(_deliver, [entry for entry in done if entry[0] is loop])
        if job is None:
            return


def _finish_at_exit(thread: weakref.ref[threading.Thread], jobs: queue.SimpleQueue[Any]) -> None:
    alive = thread()
    if alive is not None and alive.is_alive():
        jobs.put(None)
        alive.join()


def _deliver(done: list[tuple[Any, asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for _loop, future, result, exc in done:
        settle_future(future, result, exc)


class SQLiteAdapter:
    """Persistence in SQLite. ``path=None`` or ``":memory:"``: in memory for the process lifetime."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *, busy_timeout_s: float = 10.0) -> None:
        self.path: Path | None = None if path is None or str(path) == ":memory:" else Path(path)
        self._worker = SQLiteWorker(self.path, busy_timeout_s)
        self._changes = SQLiteChanges(self._worker)
        self._stores: SQLStores | None = None
        self._replica_locks: list[int] = []

    @property
    def in_memory(self) -> bool:
        """Whether state lives only as long as the process (``flue start`` warns)."""
        return self.path is None

    @property
    def description(self) -> str:
        return f"SQLite database {self.path}" if self.path else "in-memory SQLite database"

    def __repr__(self) -> str:
        return f"SQLiteAdapter({str(self.path) if self.path else ':memory:'!r})"

    async def migrate(self) -> None:
        """Create the schema idempotently and stamp the version (refusing newer/unknown stamps)."""
        where = self.description

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            stored = _stored_version(conn)
            if stored is not None:
                check_schema_version(stored, where)
            # executescript() would COMMIT our transaction, so run statements one by one.
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            _add_missing_columns(conn)
            conn.execute(
                "INSERT OR IGNORE INTO flue_meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

        await self._worker.write(op)

    async def connect(self) -> SQLStores:
        """Check the stamped schema version and return the stores (the same ones on every call)."""
        where = self.description

        def op(conn: sqlite3.Connection) -> str | None:
            exists = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='flue_meta'"
            ).fetchone()
            return _stored_version(conn) if exists else None

        check_schema_version(await self._worker.read(op), where)
        if self._stores is None:
            self._stores = open_stores(SQLiteDatabase(self._worker), self._changes)
        return self._stores

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Idempotent."""
        while self._replica_locks:
            os.close(self._replica_locks.pop())  # closing the file releases its lock
        await self._changes.close()
        await self._worker.close()

    async def lock_replica(self, replica_id: str) -> bool:
        """Hold ``replica_id`` for this process's lifetime: False when a live process already holds
        it. The lock is an ``flock`` on a file next to the database, which the kernel releases
        when its process dies, however it dies (:mod:`flue.runtime.replica`)."""
        if self.path is None:
            return True  # an in-memory database is this process's alone
        import fcntl
        import hashlib

        digest = hashlib.sha256(replica_id.encode()).hexdigest()[:16]
        lock_path = self.path.with_name(f"{self.path.name}.replica-{digest}.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._replica_locks.append(fd)
        return True

    async def _execute_for_tests(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Raw SQL on the adapter's connection (tests stamp schema versions with it)."""
        return await self._worker.write(lambda conn: conn.execute(sql, params).fetchall())


# Columns added to version 1 after it shipped (additive: older Flue ignores them), with the
# statements that depend on them.
_ADDED_COLUMNS = (("flue_runs", "owner", "TEXT"), ("flue_runs", "lease_expires_ms", "INTEGER"))
_AFTER_COLUMNS = (
    "CREATE INDEX IF NOT EXISTS flue_runs_leased ON flue_runs (lease_expires_ms) "
    "WHERE status = 'active' AND lease_expires_ms IS NOT NULL",
)


def _add_missing_columns(conn: sqlite3.Connection) -> None:
    for table, column, kind in _ADDED_COLUMNS:
        present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    for statement in _AFTER_COLUMNS:
        conn.execute(statement)


def _stored_version(conn: sqlite3.Connection) -> str | None:
    row = conn.execute("SELECT value FROM flue_meta WHERE key='schema_version'").fetchone()
    return None if row is None else row[0]
