"""PostgreSQL as a dialect of Flue's SQL core plus its connection handling (``flue.persistence.sql``).

Concurrency, replica against replica, comes from row locks: the core's
``{lock}`` is ``FOR UPDATE`` and its claims are ``FOR UPDATE [OF s] SKIP
LOCKED``, inside a ``conn.transaction()`` for ``Mode.TRANSACTION``; other
statements run on autocommit pooled connections. ``Notify`` steps become
``pg_notify`` in the same transaction (delivered at commit), and
:class:`PgChanges` hands the other replicas' notifications to the stores'
listeners (:mod:`flue_postgres.notify`).
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import psycopg
from psycopg.types.json import Json

from flue.persistence.kit import Listeners
from flue.persistence.sql import Dialect, Kind, Mode, Notify, Op, Steps, Stmt, wake
from flue_postgres.notify import Notifier
from flue_postgres.pool import ConnectionPool

T = TypeVar("T")


def _as_is(text: str) -> str:
    return text


class PostgresDialect(Dialect):
    """``%s`` placeholders, tables in one schema, row locks, ``json`` columns, ``timestamptz`` stamps.

    JSON columns are ``json`` (see :mod:`flue_postgres.schema`): psycopg decodes them on read;
    on write the text ``kit.dumps`` made is sent as it is (it refuses NaN/Infinity, which
    PostgreSQL's json type would reject anyway).
    """

    placeholder = "%s"
    row_locks = True
    skip_locked = True

    def __init__(self, quoted_schema: str) -> None:
        super().__init__()
        self.prefix = f"{quoted_schema}."

    def json(self, text: str) -> Any:
        return Json(text, dumps=_as_is)

    def loads(self, value: Any) -> Any:
        return value

    def timestamp(self, name: str) -> tuple[str, str]:
        return f"{name}_at", "to_timestamp(? / 1000.0)"


class PgDatabase:
    def __init__(self, pool: ConnectionPool, dialect: PostgresDialect, notifier: Notifier) -> None:
        self.dialect = dialect
        self._pool = pool
        self._notifier = notifier

    async def run(self, op: Op[T], mode: Mode) -> T:
        async with self._pool.connection() as conn:
            if mode is Mode.TRANSACTION:
                async with conn.transaction():
                    return await self._drive(conn, op)
            return await self._drive(conn, op)

    async def _drive(self, conn: psycopg.AsyncConnection[Any], op: Op[T]) -> T:
        steps = Steps(op)
        try:
            for step in steps:
                if isinstance(step, Notify):
                    await self._notifier.send(conn, step.kind, step.key)
                else:
                    steps.rows = await _execute(conn, step)
        finally:
            steps.close()
        return cast(T, steps.result)


async def _execute(conn: psycopg.AsyncConnection[Any], step: Stmt) -> Any:
    if step.many:
        async with conn.cursor() as cur:
            await cur.executemany(step.sql, step.params)
        return None
    cur = await conn.execute(step.sql, step.params)
    return await cur.fetchone() if step.fetch == "one" else await cur.fetchall() if step.fetch == "all" else None


class PgChanges:
    """Other replicas' writes arrive through ``LISTEN`` (started by the first ``subscribe``)."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    @property
    def live_poll_interval(self) -> float | None:
        """Live readers need no timer once ``LISTEN`` is active (every replica's appends reach
        ``subscribe``; a reconnect wakes everyone); before that, they re-read every second."""
        return None if self._notifier.listening else 1.0

    def follow(self, kind: Kind, listeners: Listeners) -> None:
        self._notifier.on(kind, lambda key: wake(kind, listeners, key))

    def ensure_started(self, kind: Kind) -> None:
        self._notifier.ensure_started()
