"""PostgreSQL session, run, event-stream and snapshot stores."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Json

from flue.persistence.base import (
    OFFSET_BEFORE_START,
    ReadResult,
    RunRecord,
    RunStatus,
    SessionData,
    StreamClosed,
    StreamMeta,
    StreamNotFound,
    format_offset,
    parse_offset,
)
from flue.persistence.kit import (
    Listeners,
    clamp_limit,
    decode_run_cursor,
    dumps,
    encode_run_cursor,
    iso_to_ms,
    now_ms,
    utc_now_iso,
)
from flue_postgres.notify import Notifier
from flue_postgres.pool import ConnectionPool

_TERMINAL: tuple[RunStatus, ...] = ("completed", "errored")


def as_json(value: Any) -> Json:
    # kit.dumps refuses NaN/Infinity, which PostgreSQL's json type would reject anyway.
    return Json(value, dumps=dumps)


class PgSessionStore:
    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool, self._s = pool, schema

    async def save(self, key: str, data: SessionData) -> None:
        doc = as_json(data.model_dump(mode="json"))
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {self._s}.flue_sessions (key, data, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (key, doc),
            )

    async def load(self, key: str) -> SessionData | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT data FROM {self._s}.flue_sessions WHERE key = %s", (key,))
            row = await cur.fetchone()
        return None if row is None else SessionData.model_validate(row["data"])

    async def delete(self, key: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self._s}.flue_sessions WHERE key = %s", (key,))


_RUN_COLUMNS = "run_id, workflow, status, payload, result, error, started_at, ended_at, duration_ms, started_ms"


def _run(row: dict[str, Any]) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"], workflow_name=row["workflow"], status=row["status"], payload=row["payload"],
        result=row["result"], error=row["error"], started_at=row["started_at"], ended_at=row["ended_at"],
        duration_ms=row["duration_ms"],
    )


class PgRunStore:
    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool, self._s = pool, schema

    async def create_run(
        self, record: RunRecord, *, owner: str | None = None, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord:
        """Insert an active run; on a duplicate id the first record wins and is returned."""
        leased = owner is not None and record.status == "active"
        params = (
            record.run_id, record.workflow_name, record.status, as_json(record.payload),
            None if record.result is None else as_json(record.result),
            None if record.error is None else as_json(record.error),
            record.started_at, iso_to_ms(record.started_at), record.ended_at, record.duration_ms,
            owner if leased else None, now_ms(now) + int(lease_s * 1000) if leased else None,
        )
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {self._s}.flue_runs (run_id, workflow, status, payload, result, error, started_at, "
                "started_ms, ended_at, duration_ms, owner, lease_expires_ms) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (run_id) DO NOTHING",
                params,
            )
            # A new statement sees a concurrent first writer's committed row.
            cur = await conn.execute(f"SELECT {_RUN_COLUMNS} FROM {self._s}.flue_runs WHERE run_id = %s",
                                     (record.run_id,))
            row = await cur.fetchone()
        assert row is not None
        return _run(row)

    async def end_run(
        self, run_id: str, *, status: RunStatus, result: Any = None, error: dict[str, Any] | None = None,
        ended_at: str, duration_ms: float,
    ) -> None:
        """Finalize an active run (first finalization wins); unknown or ended runs are left alone."""
        if status not in _TERMINAL:
            raise ValueError(f"end_run status must be one of {_TERMINAL}, not {status!r}")
        async with self._pool.connection() as conn:
            await conn.execute(
                f"UPDATE {self._s}.flue_runs SET status = %s, result = %s, error = %s, ended_at = %s, "
                "duration_ms = %s, owner = NULL, lease_expires_ms = NULL WHERE run_id = %s AND status = 'active'",
                (status, None if result is None else as_json(result), None if error is None else as_json(error),
                 ended_at, duration_ms, run_id),
            )

    async def renew_run(self, run_id: str, owner: str, *, lease_s: float = 30.0, now: datetime | None = None) -> bool:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_runs SET lease_expires_ms = %s WHERE run_id = %s AND owner = %s "
                "AND status = 'active' RETURNING run_id",
                (now_ms(now) + int(lease_s * 1000), run_id, owner),
            )
            return await cur.fetchone() is not None

    async def claim_interrupted_run(
        self, owner: str, *, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord | None:
        t = now_ms(now)
        async with self._pool.connection() as conn:
            # SKIP LOCKED: a run another replica is claiming right now is left to it; the re-check of
            # the WHERE clause after a wait drops a run whose lease that claim just renewed
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_runs SET owner = %s, lease_expires_ms = %s WHERE run_id = ("
                f"SELECT run_id FROM {self._s}.flue_runs WHERE status = 'active' AND lease_expires_ms IS NOT NULL "
                "AND lease_expires_ms < %s ORDER BY lease_expires_ms LIMIT 1 FOR UPDATE SKIP LOCKED) "
                f"AND lease_expires_ms < %s RETURNING {_RUN_COLUMNS}",
                (owner, t + int(lease_s * 1000), t, t),
            )
            row = await cur.fetchone()
        return None if row is None else _run(row)

    async def expire_run_leases(self, owner_prefix: str, *, keep: str, now: datetime | None = None) -> list[str]:
        """End at once the leases of active runs whose owner starts with ``owner_prefix``, except
        ``keep``'s (a restarted replica's previous process is known dead); returns their ids."""
        t = now_ms(now)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_runs SET lease_expires_ms = %s WHERE status = 'active' "
                "AND lease_expires_ms >= %s AND left(owner, %s) = %s AND owner <> %s RETURNING run_id",
                (t - 1, t, len(owner_prefix), owner_prefix, keep),
            )
            return [r["run_id"] for r in await cur.fetchall()]

    async def get_run(self, run_id: str) -> RunRecord | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT {_RUN_COLUMNS} FROM {self._s}.flue_runs WHERE run_id = %s", (run_id,))
            row = await cur.fetchone()
        return None if row is None else _run(row)

    async def list_runs(
        self, *, workflow_name: str | None = None, status: RunStatus | None = None, limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Newest first (by ``started_at``, then run id); the cursor continues after the last record."""
        n = clamp_limit(limit)
        where: list[str] = []
        params: list[Any] = []
        if workflow_name is not None:
            where.append("workflow = %s")
            params.append(workflow_name)
        if status is not None:
            where.append("status = %s")
            params.append(status)
        if cursor:
            started_ms, run_id = decode_run_cursor(cursor)
            where.append("(started_ms, run_id) < (%s, %s)")
            params += [started_ms, run_id]
        sql = f"SELECT {_RUN_COLUMNS} FROM {self._s}.flue_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_ms DESC, run_id DESC LIMIT %s"
        params.append(n + 1)
        async with self._pool.connection() as conn:
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
        page = rows[:n]
        next_cursor = encode_run_cursor(page[-1]["started_ms"], page[-1]["run_id"]) if len(rows) > n else None
        return [_run(r) for r in page], next_cursor


def _meta(path: str, row: dict[str, Any]) -> StreamMeta:
    return StreamMeta(path=path, next_offset=format_offset(row["length"]), length=row["length"],
                      closed=row["closed"], created_at=row["created_at"])


async def append_rows(
    conn: psycopg.AsyncConnection[Any], schema: str, notifier: Notifier, path: str, docs: list[Any],
    *, create: bool = False,
) -> int:
    """Append JSON documents to a stream inside the caller's transaction; return the new length.

    The stream row is locked, so concurrent appenders get consecutive seqs; other
    replicas are notified when the transaction commits. ``create``: make the stream
    if it is missing (lifecycle events of submissions).
    """
    if create:
        await conn.execute(
            f"INSERT INTO {schema}.flue_streams (path, created_at) VALUES (%s, %s) ON CONFLICT (path) DO NOTHING",
            (path, utc_now_iso()),
        )
    cur = await conn.execute(f"SELECT length, closed FROM {schema}.flue_streams WHERE path = %s FOR UPDATE", (path,))
    row = await cur.fetchone()
    if row is None:
        raise StreamNotFound(path)
    if row["closed"]:
        raise StreamClosed(f"stream {path!r} is closed")
    length = row["length"]
    if docs:
        async with conn.cursor() as c:
            await c.executemany(
                f"INSERT INTO {schema}.flue_events (path, seq, data) VALUES (%s, %s, %s)",
                [(path, length + i, d) for i, d in enumerate(docs, start=1)],
            )
        await conn.execute(f"UPDATE {schema}.flue_streams SET length = %s WHERE path = %s", (length + len(docs), path))
        await notifier.send(conn, "s", path)
    return length + len(docs)


class PgEventStreamStore:
    """Stream rows allocate seqs: an append locks its stream row (``FOR UPDATE``),
    so appenders on any replica get consecutive, non-overlapping offsets.
    Subscribers are woken by appends in this process directly and by appends
    on other replicas through ``LISTEN``/``NOTIFY``."""

    def __init__(self, pool: ConnectionPool, schema: str, notifier: Notifier) -> None:
        self._pool, self._s = pool, schema
        self._listeners = Listeners()
        self._notifier = notifier
        # the empty key: notifications may have been lost, wake every reader
        notifier.on("s", lambda path: self._listeners.notify(path) if path else self._listeners.notify_all())

    @property
    def live_poll_interval(self) -> float | None:
        """Live readers need no timer once ``LISTEN`` is active (every replica's appends reach
        ``subscribe``; a reconnect wakes everyone); before that, they re-read every second."""
        return None if self._notifier.listening else 1.0

    def appended(self, path: str) -> None:
        """Wake this process's subscribers of ``path`` after an append made in another store's transaction."""
        self._listeners.notify(path)

    async def create_stream(self, path: str) -> StreamMeta:
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {self._s}.flue_streams (path, created_at) VALUES (%s, %s) ON CONFLICT (path) DO NOTHING",
                (path, utc_now_iso()),
            )
            cur = await conn.execute(
                f"SELECT length, closed, created_at FROM {self._s}.flue_streams WHERE path = %s", (path,)
            )
            row = await cur.fetchone()
        assert row is not None
        return _meta(path, row)

    async def append_events(self, path: str, events: list[dict[str, Any]]) -> str:
        if not all(isinstance(e, dict) for e in events):
            raise TypeError("events must be JSON objects (dicts)")
        docs = [as_json(e) for e in events]
        async with self._pool.connection() as conn, conn.transaction():
            length = await append_rows(conn, self._s, self._notifier, path, docs)
        if docs:
            self._listeners.notify(path)
        return format_offset(length)

    async def read_events(self, path: str, offset: str = OFFSET_BEFORE_START, limit: int | None = None) -> ReadResult:
        start = parse_offset(offset)
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        sql = f"SELECT seq, data FROM {self._s}.flue_events WHERE path = %s AND seq > %s ORDER BY seq"
        params: tuple[Any, ...] = (path, start)
        if limit is not None:
            sql += " LIMIT %s"
            params += (limit,)
        async with self._pool.connection() as conn:
            # Events first, stream row second: the row is at least as new as the
            # events, so up_to_date is never claimed for events we did not return.
            cur = await conn.execute(sql, params)
            rows = await cur.fetchall()
            cur = await conn.execute(f"SELECT length, closed FROM {self._s}.flue_streams WHERE path = %s", (path,))
            stream = await cur.fetchone()
        if stream is None:
            return ReadResult(events=[], next_offset=format_offset(start), up_to_date=True, closed=False)
        position = rows[-1]["seq"] if rows else start
        return ReadResult(
            events=[r["data"] for r in rows],
            next_offset=format_offset(position),
            up_to_date=position >= stream["length"],
            closed=stream["closed"],
        )

    async def close_stream(self, path: str) -> None:
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT closed FROM {self._s}.flue_streams WHERE path = %s FOR UPDATE", (path,))
            row = await cur.fetchone()
            if row is None:
                raise StreamNotFound(path)
            changed = not row["closed"]
            if changed:
                await conn.execute(f"UPDATE {self._s}.flue_streams SET closed = true WHERE path = %s", (path,))
                await self._notifier.send(conn, "s", path)
        if changed:
            self._listeners.notify(path)

    async def get_stream_meta(self, path: str) -> StreamMeta | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT length, closed, created_at FROM {self._s}.flue_streams WHERE path = %s", (path,)
            )
            row = await cur.fetchone()
        return None if row is None else _meta(path, row)

    def subscribe(self, path: str, listener: Callable[[str], None]) -> Callable[[], None]:
        self._notifier.ensure_started()
        return self._listeners.add(path, listener)


class PgSnapshotStore:
    def __init__(self, pool: ConnectionPool, schema: str) -> None:
        self._pool, self._s = pool, schema

    async def save_snapshot(self, scope: str, data: bytes) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(
                f"INSERT INTO {self._s}.flue_snapshots (scope, data, updated_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (scope) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
                (scope, bytes(data)),
            )

    async def load_snapshot(self, scope: str) -> bytes | None:
        async with self._pool.connection() as conn:
            cur = await conn.execute(f"SELECT data FROM {self._s}.flue_snapshots WHERE scope = %s", (scope,))
            row = await cur.fetchone()
        return None if row is None else bytes(row["data"])

    async def delete_snapshot(self, scope: str) -> None:
        async with self._pool.connection() as conn:
            await conn.execute(f"DELETE FROM {self._s}.flue_snapshots WHERE scope = %s", (scope,))
