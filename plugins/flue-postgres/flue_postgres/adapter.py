"""``PostgresAdapter``: Flue's persistence contract on PostgreSQL (psycopg 3, async).

Several Flue server replicas can share one database: admission is a
transaction serialized per agent instance, claims are atomic
(``FOR UPDATE SKIP LOCKED``), leases expire and are taken over, and stream
appends lock the stream row so concurrent writers get consecutive offsets.
``subscribe`` listeners are woken by writes from this process directly and
by writes from other replicas through ``LISTEN``/``NOTIFY``; when the
listening connection (re)connects every listener is woken once, for what was
sent while nobody listened. So live readers need no timer of their own.

All tables live in one schema (default ``public``), so one database can hold
several independent Flue deployments.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from flue.persistence.base import SCHEMA_VERSION
from flue.persistence.kit import check_schema_version
from flue.persistence.sql import SQLStores, open_stores
from flue_postgres.dialect import PgChanges, PgDatabase, PostgresDialect
from flue_postgres.notify import Notifier
from flue_postgres.pool import ConnectionPool
from flue_postgres.schema import META_TABLE, TABLES

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class PostgresAdapter:
    """``PostgresAdapter("postgresql://user@host/db", schema="flue")``."""

    def __init__(self, url: str, *, schema: str = "public", pool_size: int = 5, connect_timeout: float = 10.0) -> None:
        if not SCHEMA_NAME.match(schema):
            raise ValueError(f"schema must be a plain SQL identifier (letters, digits, _), not {schema!r}")
        self.url = url
        self.schema = schema
        self._s = f'"{schema}"'
        self._pool = ConnectionPool(url, size=pool_size, connect_timeout=connect_timeout)
        self._notifier = Notifier(url, schema, connect_timeout)
        self._connect_timeout = connect_timeout
        self._stores: SQLStores | None = None
        self._replica_conns: list[Any] = []

    @property
    def description(self) -> str:
        """Where the data lives, without credentials."""
        try:
            info = conninfo_to_dict(self.url)
        except Exception:
            info = {}
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"PostgreSQL schema {self.schema!r} at {where}"

    def __repr__(self) -> str:
        return f"PostgresAdapter({self.description})"

    async def migrate(self) -> None:
        """Create the schema and tables idempotently and stamp the version.

        An advisory lock serializes replicas migrating at the same moment
        (concurrent ``CREATE TABLE IF NOT EXISTS`` can otherwise collide).
        """
        s = self._s
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"flue-migrate:{self.schema}",))
            cur = await conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,))
            if await cur.fetchone() is None:
                await conn.execute(f"CREATE SCHEMA {s}")
            await conn.execute(META_TABLE.format(s=s))
            cur = await conn.execute(f"SELECT value FROM {s}.flue_meta WHERE key = 'schema_version'")
            row = await cur.fetchone()
            if row is not None:
                check_schema_version(row[0], self.description)
            for statement in TABLES:
                await conn.execute(statement.format(s=s))
            await conn.execute(
                f"INSERT INTO {s}.flue_meta (key, value) VALUES ('schema_version', %s) ON CONFLICT (key) DO NOTHING",
                (str(SCHEMA_VERSION),),
            )

    async def connect(self) -> SQLStores:
        """Check the stamped version (fails at boot on a bad URL too) and return the stores."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT to_regclass(%s)", (f"{self._s}.flue_meta",))
            row = await cur.fetchone()
            stored = None
            if row is not None and row[0] is not None:
                cur = await conn.execute(f"SELECT value FROM {self._s}.flue_meta WHERE key = 'schema_version'")
                found = await cur.fetchone()
                stored = None if found is None else found[0]
        check_schema_version(stored, self.description)
        if self._stores is None:
            db = PgDatabase(self._pool, PostgresDialect(self._s), self._notifier)
            self._stores = open_stores(db, PgChanges(self._notifier))
        return self._stores

    async def listening(self) -> None:
        """Start the LISTEN connection (normally started by the first ``subscribe``) and wait until
        it is active, so notifications from other replicas are not missed from here on. Wrap in
        ``asyncio.timeout`` to bound the wait."""
        await self._notifier.wait_listening()

    async def lock_replica(self, replica_id: str) -> bool:
        """Hold ``replica_id`` for this process's lifetime: False when a live process already holds
        it. The lock is a session advisory lock on a connection of its own, which PostgreSQL
        releases when the connection ends, so when its process dies (:mod:`flue.runtime.replica`)."""
        import psycopg

        conn = await psycopg.AsyncConnection.connect(
            self.url, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
        )
        # if this host dies the server must notice soon to release the lock: keepalives every few seconds
        await conn.execute("SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3")
        cur = await conn.execute(
            "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (f"flue-replica:{self.schema}:{replica_id}",)
        )
        row = await cur.fetchone()
        if not (row and row[0]):
            await conn.close()
            return False
        self._replica_conns.append(conn)
        return True

    async def close(self) -> None:
        """Stop listening and close pooled connections. Idempotent."""
        while self._replica_conns:
            await self._replica_conns.pop().close()
        await self._notifier.close()
        await self._pool.close()

    async def _execute_for_tests(self, sql: str, params: Any = None) -> None:
        """Raw SQL on a pooled connection; ``{s}`` in ``sql`` is the quoted schema."""
        async with self._pool.connection() as conn:
            await conn.execute(sql.format(s=self._s), params)
