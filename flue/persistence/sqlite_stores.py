"""SQLite session, run, event-stream and snapshot stores (see ``flue.persistence.sqlite``).

Each method builds a function of the connection and runs it on the adapter's
worker thread; JSON encoding happens before (so bad values fail early) and
decoding on the worker (so large reads stay off the event loop).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from flue.persistence.sqlite import SQLiteWorker

_TERMINAL: tuple[RunStatus, ...] = ("completed", "errored")


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


class SQLiteSessionStore:
    def __init__(self, worker: SQLiteWorker) -> None:
        self._db = worker

    async def save(self, key: str, data: SessionData) -> None:
        text = dumps(data.model_dump(mode="json"))
        stamp = now_ms()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO flue_sessions (key, data, updated_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_ms = excluded.updated_ms",
                (key, text, stamp),
            )
        )

    async def load(self, key: str) -> SessionData | None:
        def op(conn: sqlite3.Connection) -> Any:
            row = conn.execute("SELECT data FROM flue_sessions WHERE key = ?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])

        raw = await self._db.run(op)
        return None if raw is None else SessionData.model_validate(raw)

    async def delete(self, key: str) -> None:
        await self._db.write(lambda conn: conn.execute("DELETE FROM flue_sessions WHERE key = ?", (key,)))

    # One round trip instead of two for the deletion guard (flue.runtime.deletion): optional
    # methods that other session stores need not have.

    async def load_with(self, key: str, other: str) -> tuple[SessionData | None, SessionData | None]:
        """``key`` and ``other``, read in one transaction."""

        def op(conn: sqlite3.Connection) -> list[Any]:
            found = dict(conn.execute("SELECT key, data FROM flue_sessions WHERE key IN (?, ?)", (key, other)))
            return [_loads(found.get(key)), _loads(found.get(other))]

        raw = await self._db.read(op)
        first, second = (None if r is None else SessionData.model_validate(r) for r in raw)
        return first, second

    async def save_checked(self, key: str, other: str, make: Callable[[SessionData | None], SessionData]) -> None:
        """Save ``make(<other's data>)`` as ``key`` in one transaction; ``make`` may raise (nothing is saved)."""

        def op(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT data FROM flue_sessions WHERE key = ?", (other,)).fetchone()
            final = make(None if row is None else SessionData.model_validate(json.loads(row[0])))
            conn.execute(
                "INSERT INTO flue_sessions (key, data, updated_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_ms = excluded.updated_ms",
                (key, dumps(final.model_dump(mode="json")), now_ms()),
            )

        await self._db.write(op)


_RUN_COLUMNS = "run_id, workflow, status, payload, result, error, started_at, ended_at, duration_ms, started_ms"


def _run_from_row(row: tuple[Any, ...]) -> RunRecord:
    return RunRecord(
        run_id=row[0],
        workflow_name=row[1],
        status=row[2],
        payload=_loads(row[3]),
        result=_loads(row[4]),
        error=_loads(row[5]),
        started_at=row[6],
        ended_at=row[7],
        duration_ms=row[8],
    )


class SQLiteRunStore:
    def __init__(self, worker: SQLiteWorker) -> None:
        self._db = worker

    async def create_run(
        self, record: RunRecord, *, owner: str | None = None, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord:
        """Insert an active run; on a duplicate id the first record wins and is returned."""
        leased = owner is not None and record.status == "active"
        params = (
            record.run_id,
            record.workflow_name,
            record.status,
            dumps(record.payload),
            None if record.result is None else dumps(record.result),
            None if record.error is None else dumps(record.error),
            record.started_at,
            iso_to_ms(record.started_at),
            record.ended_at,
            record.duration_ms,
            owner if leased else None,
            now_ms(now) + int(lease_s * 1000) if leased else None,
        )

        def op(conn: sqlite3.Connection) -> tuple[Any, ...]:
            conn.execute(
                "INSERT INTO flue_runs (run_id, workflow, status, payload, result, error, started_at, "
                "started_ms, ended_at, duration_ms, owner, lease_expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO NOTHING",
                params,
            )
            return conn.execute(f"SELECT {_RUN_COLUMNS} FROM flue_runs WHERE run_id = ?", (record.run_id,)).fetchone()

        return _run_from_row(await self._db.write(op))

    async def end_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        result: Any = None,
        error: dict[str, Any] | None = None,
        ended_at: str,
        duration_ms: float,
    ) -> None:
        """Finalize an active run (first finalization wins); unknown or ended runs are left alone."""
        if status not in _TERMINAL:
            raise ValueError(f"end_run status must be one of {_TERMINAL}, not {status!r}")
        params = (
            status,
            None if result is None else dumps(result),
            None if error is None else dumps(error),
            ended_at,
            duration_ms,
            run_id,
        )
        await self._db.write(
            lambda conn: conn.execute(
                "UPDATE flue_runs SET status = ?, result = ?, error = ?, ended_at = ?, duration_ms = ?, "
                "owner = NULL, lease_expires_ms = NULL WHERE run_id = ? AND status = 'active'",
                params,
            )
        )

    async def renew_run(self, run_id: str, owner: str, *, lease_s: float = 30.0, now: datetime | None = None) -> bool:
        expires = now_ms(now) + int(lease_s * 1000)
        rows = await self._db.write(
            lambda conn: conn.execute(
                "UPDATE flue_runs SET lease_expires_ms = ? WHERE run_id = ? AND owner = ? AND status = 'active' "
                "RETURNING run_id",
                (expires, run_id, owner),
            ).fetchall()
        )
        return bool(rows)

    async def claim_interrupted_run(
        self, owner: str, *, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord | None:
        t = now_ms(now)

        def op(conn: sqlite3.Connection) -> tuple[Any, ...] | None:
            # one write transaction: the select and the update cannot interleave with another claimer
            row = conn.execute(
                "SELECT run_id FROM flue_runs WHERE status = 'active' AND lease_expires_ms IS NOT NULL "
                "AND lease_expires_ms < ? ORDER BY lease_expires_ms LIMIT 1",
                (t,),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE flue_runs SET owner = ?, lease_expires_ms = ? WHERE run_id = ?",
                (owner, t + int(lease_s * 1000), row[0]),
            )
            return conn.execute(f"SELECT {_RUN_COLUMNS} FROM flue_runs WHERE run_id = ?", (row[0],)).fetchone()

        row = await self._db.write(op)
        return None if row is None else _run_from_row(row)

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = await self._db.run(
            lambda conn: conn.execute(f"SELECT {_RUN_COLUMNS} FROM flue_runs WHERE run_id = ?", (run_id,)).fetchone()
        )
        return None if row is None else _run_from_row(row)

    async def list_runs(
        self,
        *,
        workflow_name: str | None = None,
        status: RunStatus | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Newest first (by ``started_at``, then run id); the cursor continues after the last record."""
        n = clamp_limit(limit)
        where: list[str] = []
        params: list[Any] = []
        if workflow_name is not None:
            where.append("workflow = ?")
            params.append(workflow_name)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if cursor:
            started_ms, run_id = decode_run_cursor(cursor)
            where.append("(started_ms < ? OR (started_ms = ? AND run_id < ?))")
            params += [started_ms, started_ms, run_id]
        sql = f"SELECT {_RUN_COLUMNS} FROM flue_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_ms DESC, run_id DESC LIMIT ?"
        params.append(n + 1)
        rows = await self._db.run(lambda conn: conn.execute(sql, params).fetchall())
        page = rows[:n]
        next_cursor = encode_run_cursor(page[-1][9], page[-1][0]) if len(rows) > n else None
        return [_run_from_row(r) for r in page], next_cursor


def _meta(path: str, row: tuple[Any, ...]) -> StreamMeta:
    length, closed, created_at = row
    return StreamMeta(path=path, next_offset=format_offset(length), length=length, closed=bool(closed),
                      created_at=created_at)


def append_rows(conn: sqlite3.Connection, path: str, texts: list[str], *, create: bool = False) -> int:
    """Append JSON texts to a stream inside the caller's write transaction; return the new length.

    ``create``: make the stream if it is missing (lifecycle events of submissions).
    """
    if create:
        conn.execute(
            "INSERT INTO flue_streams (path, created_at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING",
            (path, utc_now_iso()),
        )
    row = conn.execute("SELECT length, closed FROM flue_streams WHERE path = ?", (path,)).fetchone()
    if row is None:
        raise StreamNotFound(path)
    length, closed = row
    if closed:
        raise StreamClosed(f"stream {path!r} is closed")
    conn.executemany(
        "INSERT INTO flue_events (path, seq, data) VALUES (?, ?, ?)",
        [(path, length + i, t) for i, t in enumerate(texts, start=1)],
    )
    if texts:
        conn.execute("UPDATE flue_streams SET length = ? WHERE path = ?", (length + len(texts), path))
    return length + len(texts)


class SQLiteEventStreamStore:
    """Streams are rows in ``flue_streams``; events are ``(path, seq)`` rows numbered from 1.

    The offset after event ``n`` is ``format_offset(n)``. ``length`` on the
    stream row is the allocator: an append reads and bumps it inside one write
    transaction, so concurrent appenders (tasks, threads, processes) get
    consecutive, non-overlapping seqs.
    """

    def __init__(self, worker: SQLiteWorker) -> None:
        self._db = worker
        self._listeners = Listeners()

    def appended(self, path: str) -> None:
        """Wake this store's subscribers of ``path`` after an append made in another store's transaction."""
        self._listeners.notify(path)

    async def create_stream(self, path: str) -> StreamMeta:
        created_at = utc_now_iso()

        def op(conn: sqlite3.Connection) -> tuple[Any, ...]:
            conn.execute(
                "INSERT INTO flue_streams (path, created_at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING",
                (path, created_at),
            )
            return conn.execute(
                "SELECT length, closed, created_at FROM flue_streams WHERE path = ?", (path,)
            ).fetchone()

        return _meta(path, await self._db.write(op))

    async def append_events(self, path: str, events: list[dict[str, Any]]) -> str:
        if not all(isinstance(e, dict) for e in events):
            raise TypeError("events must be JSON objects (dicts)")
        texts = [dumps(e) for e in events]

        length = await self._db.write(lambda conn: append_rows(conn, path, texts))
        if texts:
            self._listeners.notify(path)
        return format_offset(length)

    async def read_events(
        self, path: str, offset: str = OFFSET_BEFORE_START, limit: int | None = None
    ) -> ReadResult:
        start = parse_offset(offset)
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")

        def op(conn: sqlite3.Connection) -> tuple[tuple[Any, ...] | None, list[tuple[int, Any]]]:
            row = conn.execute("SELECT length, closed FROM flue_streams WHERE path = ?", (path,)).fetchone()
            if row is None:
                return None, []
            sql = "SELECT seq, data FROM flue_events WHERE path = ? AND seq > ? ORDER BY seq"
            params: tuple[Any, ...] = (path, start)
            if limit is not None:
                sql += " LIMIT ?"
                params += (limit,)
            return row, [(seq, json.loads(data)) for seq, data in conn.execute(sql, params)]

        row, rows = await self._db.read(op)
        if row is None:
            return ReadResult(events=[], next_offset=format_offset(start), up_to_date=True, closed=False)
        length, closed = row
        position = rows[-1][0] if rows else start
        return ReadResult(
            events=[e for _, e in rows],
            next_offset=format_offset(position),
            up_to_date=position >= length,
            closed=bool(closed),
        )

    async def close_stream(self, path: str) -> None:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute("SELECT closed FROM flue_streams WHERE path = ?", (path,)).fetchone()
            if row is None:
                raise StreamNotFound(path)
            if row[0]:
                return False
            conn.execute("UPDATE flue_streams SET closed = 1 WHERE path = ?", (path,))
            return True

        if await self._db.write(op):
            self._listeners.notify(path)

    async def get_stream_meta(self, path: str) -> StreamMeta | None:
        row = await self._db.run(
            lambda conn: conn.execute(
                "SELECT length, closed, created_at FROM flue_streams WHERE path = ?", (path,)
            ).fetchone()
        )
        return None if row is None else _meta(path, row)

    def subscribe(self, path: str, listener: Callable[[str], None]) -> Callable[[], None]:
        return self._listeners.add(path, listener)


class SQLiteSnapshotStore:
    def __init__(self, worker: SQLiteWorker) -> None:
        self._db = worker

    async def save_snapshot(self, scope: str, data: bytes) -> None:
        blob = bytes(data)
        stamp = now_ms()
        await self._db.write(
            lambda conn: conn.execute(
                "INSERT INTO flue_snapshots (scope, data, updated_ms) VALUES (?, ?, ?) "
                "ON CONFLICT (scope) DO UPDATE SET data = excluded.data, updated_ms = excluded.updated_ms",
                (scope, blob, stamp),
            )
        )

    async def load_snapshot(self, scope: str) -> bytes | None:
        row = await self._db.run(
            lambda conn: conn.execute("SELECT data FROM flue_snapshots WHERE scope = ?", (scope,)).fetchone()
        )
        return None if row is None else bytes(row[0])

    async def delete_snapshot(self, scope: str) -> None:
        await self._db.write(lambda conn: conn.execute("DELETE FROM flue_snapshots WHERE scope = ?", (scope,)))
