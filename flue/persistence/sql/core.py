"""The dialect interface of Flue's SQL core (public, for adapter authors).

The stores in :mod:`flue.persistence.sql.stores` and
:mod:`flue.persistence.sql.submissions` hold all of the storage logic once:
admission, claims, head pointers, settlement, leases, stream appends, runs,
sessions and snapshots. They never touch a connection. Each operation is a
generator (an :data:`Op`) that yields the statements it needs -- :class:`Stmt`
to execute, :class:`Notify` to tell other processes that something changed --
and receives each statement's rows back. A :class:`Database` runs an operation
on one connection, in the :class:`Mode` it asks for, and returns the
generator's value. So the same logic runs synchronously on SQLite's worker
thread and asynchronously on a PostgreSQL pool.

An adapter for another database is three small parts:

- a :class:`Dialect`: how statements are spelled (placeholders, table prefix,
  row locks, JSON parameters and columns, timestamp columns);
- a :class:`Database`: how a connection and a transaction are obtained, and
  how :class:`Notify` steps are delivered (``pg_notify``; nothing for SQLite);
- a :class:`Changes`: how this process hears about other processes' writes
  (``LISTEN``; ``PRAGMA data_version`` polling; or nothing).

Core statements are written in one spelling: ``?`` placeholders, ``{p}``
before every table name, and the tokens ``{lock}`` (a row lock, ``FOR
UPDATE``), ``{skip}`` and ``{skip:s}`` (a claim lock that skips rows locked by
another claimer, ``FOR UPDATE [OF s] SKIP LOCKED``) at the end of a
``SELECT``. :meth:`Dialect.sql` rewrites them. Statements also use
``INSERT ... ON CONFLICT``, ``RETURNING`` and row values, which SQLite (3.35+)
and PostgreSQL share.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, cast

from flue.persistence.kit import Listeners

T = TypeVar("T")

#: What a :class:`Notify` is about: ``"s"`` a stream changed (key: its path), ``"q"`` an
#: instance's submission queue changed (key: the instance). The empty key: anything may have.
Kind = Literal["s", "q"]

#: The listener key of the submission store (its listeners get the instance as the value).
QUEUE_KEY = "*"


@dataclass(frozen=True, slots=True)
class Stmt:
    """Execute ``sql`` (already in the dialect's spelling) and send back its rows as tuples:
    ``fetch="one"`` the first row or ``None``, ``"all"`` a list, ``"none"`` nothing.
    ``many``: ``params`` is a list of parameter tuples (``executemany``)."""

    sql: str
    params: Sequence[Any] = ()
    fetch: Literal["none", "one", "all"] = "none"
    many: bool = False


@dataclass(frozen=True, slots=True)
class Notify:
    """Tell other processes, when the transaction commits, that ``kind``/``key`` changed."""

    kind: Kind
    key: str


#: An operation: yields steps, receives each :class:`Stmt`'s rows, returns its result.
Op = Generator[Stmt | Notify, Any, T]


class Mode(enum.Enum):
    """How a :class:`Database` runs an operation."""

    #: reads that need no common snapshot (one statement, or independent ones)
    READ = "read"
    #: several reads, ordered so they are correct without a snapshot (a database may give one)
    SNAPSHOT = "snapshot"
    #: writes that are each atomic alone (no read-check-write across statements)
    WRITE = "write"
    #: read-check-write: all statements in one transaction, serialized against other writers
    #: (with row locks where the dialect has them, else by a database-wide write lock)
    TRANSACTION = "transaction"


class Database(Protocol):
    """Connection handling for one database."""

    @property
    def dialect(self) -> Dialect:
        """How this database spells the core's statements."""
        ...

    async def run(self, op: Op[T], mode: Mode) -> T:
        """Drive ``op`` to its end on one connection (rolled back if it raises) and return its value."""
        ...


class Changes(Protocol):
    """How this process learns of other processes' writes."""

    @property
    def live_poll_interval(self) -> float | None:
        """How often live stream readers must re-read (``None``: every append wakes them)."""
        ...

    def follow(self, kind: Kind, listeners: Listeners) -> None:
        """Wake ``listeners`` (see :func:`wake`) on other processes' changes of ``kind``."""
        ...

    def ensure_started(self, kind: Kind) -> None:
        """Someone subscribed to ``kind``: start following (needs a running loop; else a no-op)."""
        ...


def wake(kind: Kind, listeners: Listeners, key: str) -> None:
    """Wake the local listeners for another process's change (``key`` empty: wake all of them)."""
    if kind == "q":
        listeners.notify(QUEUE_KEY, key)
    elif key:
        listeners.notify(key)
    else:
        listeners.notify_all()


class Dialect:
    """How core statements are spelled for one database. The defaults are SQLite's.

    Subclasses set the class attributes and override the methods that differ.
    """

    #: what each ``?`` becomes (``%s`` for psycopg, ``?`` for sqlite3)
    placeholder = "?"
    #: put before every table name (``'"flue".'`` for a PostgreSQL schema)
    prefix = ""
    #: whether ``SELECT ... FOR UPDATE`` locks rows (else TRANSACTION takes a database-wide write lock)
    row_locks = False
    #: whether ``FOR UPDATE SKIP LOCKED`` exists (claimers skip rows another claimer is taking)
    skip_locked = False

    def __init__(self) -> None:
        self._spelled: dict[str, str] = {}

    def sql(self, text: str) -> str:
        """``text`` (core spelling) in this dialect's spelling (memoized: statements are constants)."""
        out = self._spelled.get(text)
        if out is None:
            out = self._spelled[text] = self.spell(text)
        return out

    def spell(self, text: str) -> str:
        """``text`` in this dialect's spelling, not memoized (core statements hold no ``?`` or ``%``
        in literals, so placeholders can be replaced as text)."""
        lock = " FOR UPDATE" if self.row_locks else ""
        skip, skip_s = (" FOR UPDATE SKIP LOCKED", " FOR UPDATE OF s SKIP LOCKED") if self.skip_locked else (lock, lock)
        out = text.replace("{p}", self.prefix).replace("{lock}", lock)
        out = out.replace("{skip:s}", skip_s).replace("{skip}", skip)
        return out if self.placeholder == "?" else out.replace("?", self.placeholder)

    def upsert(self, table: str, key: str, values: dict[str, str]) -> str:
        """Core-spelled SQL inserting a row of ``table`` (column -> value expression, the key first)
        or, when ``key`` exists, replacing its other columns."""
        updates = ", ".join(f"{c} = excluded.{c}" for c in values if c != key)
        return (
            f"INSERT INTO {{p}}{table} ({', '.join(values)}) VALUES ({', '.join(values.values())}) "
            f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
        )

    def json(self, text: str) -> Any:
        """The parameter for a JSON column holding ``text`` (JSON already encoded by ``kit.dumps``)."""
        return text

    def loads(self, value: Any) -> Any:
        """The Python value of a JSON column as the driver returns it."""
        return None if value is None else json.loads(value)

    def timestamp(self, name: str) -> tuple[str, str]:
        """The column for the ``name`` write time and its SQL expression of one parameter, epoch ms."""
        return f"{name}_ms", "?"


class Steps:
    """The steps of an operation, for a :class:`Database` to drive::

        steps = Steps(op)
        for step in steps:
            steps.rows = execute(step)  # (or ``await``) the rows a Stmt fetched, None otherwise
        return steps.result

    Leaving the loop early (a statement raised) closes the operation. ``current`` is the
    step handed out last (the statement that raised, when one did).
    """

    def __init__(self, op: Op[Any]) -> None:
        self._op = op
        self.rows: Any = None
        self.result: Any = None
        self.current: Stmt | Notify | None = None

    def __iter__(self) -> Steps:
        return self

    def __next__(self) -> Stmt | Notify:
        rows, self.rows = self.rows, None
        try:
            self.current = self._op.send(rows)
            return self.current
        except StopIteration as stop:
            self.result = stop.value
            raise StopIteration from None

    def close(self) -> None:
        self._op.close()


def run_dbapi(cursor: Any, op: Op[T]) -> T:
    """Drive ``op`` on a DB-API cursor, synchronously (SQLite's worker thread uses this).

    :class:`Notify` steps are dropped: a database with no cross-process notification
    follows other processes' writes another way (its :class:`Changes`).
    """
    steps = Steps(op)
    try:
        return cast(T, drive_steps(cursor, steps))
    finally:
        steps.close()


def drive_steps(cursor: Any, steps: Steps) -> Any:
    """Execute the remaining steps of ``steps`` on a DB-API cursor; return the operation's value
    (the caller closes ``steps``)."""
    for step in steps:
        if isinstance(step, Stmt):
            steps.rows = execute_step(cursor, step)
    return steps.result


def execute_step(cursor: Any, step: Stmt) -> Any:
    """Execute one :class:`Stmt` on a DB-API cursor; return what it fetches."""
    if step.many:
        cursor.executemany(step.sql, step.params)
        return None
    cursor.execute(step.sql, step.params)
    return cursor.fetchone() if step.fetch == "one" else cursor.fetchall() if step.fetch == "all" else None


def single(sql: str, params: Sequence[Any] = (), fetch: Literal["none", "one", "all"] = "none") -> Op[Any]:
    """An operation of one statement, returning what it fetched."""
    return (yield Stmt(sql, params, fetch))
