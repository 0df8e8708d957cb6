"""Session, run, event-stream and snapshot stores on the SQL core (see :mod:`flue.persistence.sql.core`).

JSON is encoded (``kit.dumps``) before an operation runs, so bad values fail
early, and decoded inside it, so on SQLite large reads are decoded on the
worker thread, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

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
from flue.persistence.sql.core import Changes, Database, Dialect, Mode, Notify, Op, Stmt, single

_TERMINAL: tuple[RunStatus, ...] = ("completed", "errored")


def _json_or_null(d: Dialect, value: Any) -> Any:
    return None if value is None else d.json(dumps(value))


def _stamped_upsert(d: Dialect, table: str, key: str) -> str:
    """Insert or replace a ``(key, data)`` row, stamping its write time (one parameter, epoch ms)."""
    column, stamp = d.timestamp("updated")
    return d.upsert(table, key, {key: "?", "data": "?", column: stamp})


class SQLSessionStore:
    def __init__(self, db: Database) -> None:
        self._db, self._d = db, db.dialect
        self._save = self._d.sql(_stamped_upsert(self._d, "flue_sessions", "key"))

    async def save(self, key: str, data: SessionData) -> None:
        params = (key, self._d.json(dumps(data.model_dump(mode="json"))), now_ms())
        await self._db.run(single(self._save, params), Mode.WRITE)

    async def load(self, key: str) -> SessionData | None:
        def op() -> Op[Any]:
            row = yield Stmt(self._d.sql("SELECT data FROM {p}flue_sessions WHERE key = ?"), (key,), "one")
            return None if row is None else self._d.loads(row[0])

        raw = await self._db.run(op(), Mode.READ)
        return None if raw is None else SessionData.model_validate(raw)

    async def delete(self, key: str) -> None:
        await self._db.run(single(self._d.sql("DELETE FROM {p}flue_sessions WHERE key = ?"), (key,)), Mode.WRITE)

    # The deletion guard (flue.runtime.deletion) reads a session with its deletion marker, and
    # checks the marker inside the save: one round trip each. Optional methods: a session store
    # without them gets two.

    async def load_with(self, key: str, other: str) -> tuple[SessionData | None, SessionData | None]:
        """``key`` and ``other``, read together."""

        def op() -> Op[list[Any]]:
            rows = yield Stmt(self._d.sql("SELECT key, data FROM {p}flue_sessions WHERE key IN (?, ?)"),
                              (key, other), "all")
            found = {row[0]: row[1] for row in rows}
            return [None if found.get(k) is None else self._d.loads(found[k]) for k in (key, other)]

        first, second = (None if raw is None else SessionData.model_validate(raw)
                         for raw in await self._db.run(op(), Mode.READ))
        return first, second

    async def save_checked(
        self, key: str, other: str, make: Callable[[SessionData | None], SessionData], *, first: Op[bool] | None = None
    ) -> bool:
        """Save ``make(<other's data>)`` as ``key`` in one transaction; ``make`` may raise (nothing is
        saved). ``first``: an operation of another store on :attr:`database` run before, in the same
        transaction (a submission's journal entry); when it returns False, nothing is saved and
        False is returned."""

        def op() -> Op[bool]:
            if first is not None and not (yield from first):
                return False
            row = yield Stmt(self._d.sql("SELECT data FROM {p}flue_sessions WHERE key = ? {lock}"), (other,), "one")
            final = make(None if row is None else SessionData.model_validate(self._d.loads(row[0])))
            yield Stmt(self._save, (key, self._d.json(dumps(final.model_dump(mode="json"))), now_ms()))
            return True

        return await self._db.run(op(), Mode.TRANSACTION)

    @property
    def database(self) -> Database:
        """The database this store's operations run on (see ``save_checked(first=...)``)."""
        return self._db


_RUN_COLUMNS = "run_id, workflow, status, payload, result, error, started_at, ended_at, duration_ms, started_ms"
_RUN = f"SELECT {_RUN_COLUMNS} FROM {{p}}flue_runs WHERE run_id = ?"


class SQLRunStore:
    def __init__(self, db: Database, streams: SQLEventStreamStore | None = None) -> None:
        self._db, self._d = db, db.dialect
        self._streams = streams  # close_run's appends wake these streams' subscribers
        # opening and closing runs may share commits where the database offers it (SQLite)
        self._batched = getattr(db, "run_batched", db.run)

    def _run(self, row: tuple[Any, ...]) -> RunRecord:
        loads = self._d.loads
        return RunRecord(
            run_id=row[0], workflow_name=row[1], status=row[2], payload=loads(row[3]), result=loads(row[4]),
            error=loads(row[5]), started_at=row[6], ended_at=row[7], duration_ms=row[8],
        )

    def _create(self, record: RunRecord, owner: str | None, lease_s: float, now: datetime | None) -> Op[RunRecord]:
        d = self._d
        leased = owner is not None and record.status == "active"
        params = (
            record.run_id, record.workflow_name, record.status, d.json(dumps(record.payload)),
            _json_or_null(d, record.result), _json_or_null(d, record.error),
            record.started_at, iso_to_ms(record.started_at), record.ended_at, record.duration_ms,
            owner if leased else None, now_ms(now) + int(lease_s * 1000) if leased else None,
        )
        inserted = yield Stmt(d.sql(
            "INSERT INTO {p}flue_runs (run_id, workflow, status, payload, result, error, started_at, "
            "started_ms, ended_at, duration_ms, owner, lease_expires_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING RETURNING run_id"
        ), params, "one")
        if inserted is not None:
            return record
        # A statement of its own: it sees a concurrent first writer's committed row.
        row = yield Stmt(d.sql(_RUN), (record.run_id,), "one")
        return self._run(row)

    def _end(self, run_id: str, status: RunStatus, result: Any, error: dict[str, Any] | None, ended_at: str,
             duration_ms: float) -> Stmt:
        if status not in _TERMINAL:
            raise ValueError(f"end_run status must be one of {_TERMINAL}, not {status!r}")
        d = self._d
        params = (status, _json_or_null(d, result), _json_or_null(d, error), ended_at, duration_ms, run_id)
        return Stmt(d.sql(
            "UPDATE {p}flue_runs SET status = ?, result = ?, error = ?, ended_at = ?, duration_ms = ?, "
            "owner = NULL, lease_expires_ms = NULL WHERE run_id = ? AND status = 'active'"
        ), params)

    async def create_run(
        self, record: RunRecord, *, owner: str | None = None, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord:
        """Insert an active run; on a duplicate id the first record wins and is returned."""
        return await self._db.run(self._create(record, owner, lease_s, now), Mode.WRITE)

    async def end_run(
        self, run_id: str, *, status: RunStatus, result: Any = None, error: dict[str, Any] | None = None,
        ended_at: str, duration_ms: float,
    ) -> None:
        """Finalize an active run (first finalization wins); unknown or ended runs are left alone."""
        end = self._end(run_id, status, result, error, ended_at, duration_ms)
        await self._db.run(single(end.sql, end.params), Mode.WRITE)

    # A run's record and its stream, in one transaction each way: optional in the contract
    # (flue.persistence.base.RunStore); without them the runtime makes the separate calls.

    async def open_run(
        self, record: RunRecord, stream: str, *, owner: str | None = None, lease_s: float = 30.0,
        now: datetime | None = None,
    ) -> RunRecord:
        """``create_run`` and ``create_stream(stream)`` in one transaction."""

        def op() -> Op[RunRecord]:
            stored = yield from self._create(record, owner, lease_s, now)
            yield Stmt(self._d.sql(_CREATE_STREAM), (stream, utc_now_iso()))
            return stored

        return await self._batched(op(), Mode.WRITE)

    async def close_run(
        self, run_id: str, stream: str, events: list[dict[str, Any]], *, status: RunStatus, result: Any = None,
        error: dict[str, Any] | None = None, ended_at: str, duration_ms: float,
    ) -> None:
        """``append_events(stream, events)``, ``close_stream(stream)`` and ``end_run`` in one transaction."""
        end = self._end(run_id, status, result, error, ended_at, duration_ms)
        texts = [dumps(e) for e in events]

        def op() -> Op[None]:
            try:
                yield from append_rows(self._d, stream, texts, close=True)
            except StreamClosed:
                pass  # a recovering server ended the run first: its end stands (end_run is a no-op)
            yield end

        await self._batched(op(), Mode.TRANSACTION)
        if self._streams is not None:
            self._streams.appended(stream)

    async def renew_run(self, run_id: str, owner: str, *, lease_s: float = 30.0, now: datetime | None = None) -> bool:
        sql = self._d.sql(
            "UPDATE {p}flue_runs SET lease_expires_ms = ? WHERE run_id = ? AND owner = ? AND status = 'active' "
            "RETURNING run_id"
        )
        params = (now_ms(now) + int(lease_s * 1000), run_id, owner)
        return await self._db.run(single(sql, params, "one"), Mode.WRITE) is not None

    async def claim_interrupted_run(
        self, owner: str, *, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord | None:
        t = now_ms(now)
        d = self._d

        def op() -> Op[RunRecord | None]:
            # ``{skip}``: a run another replica is claiming right now is left to it; the
            # update re-checks the lease, so a run whose lease that claim renewed is dropped
            row = yield Stmt(d.sql(
                "SELECT run_id FROM {p}flue_runs WHERE status = 'active' AND lease_expires_ms IS NOT NULL "
                "AND lease_expires_ms < ? ORDER BY lease_expires_ms LIMIT 1{skip}"
            ), (t,), "one")
            if row is None:
                return None
            row = yield Stmt(d.sql(
                f"UPDATE {{p}}flue_runs SET owner = ?, lease_expires_ms = ? WHERE run_id = ? "
                f"AND lease_expires_ms < ? RETURNING {_RUN_COLUMNS}"
            ), (owner, t + int(lease_s * 1000), row[0], t), "one")
            return None if row is None else self._run(row)

        return await self._db.run(op(), Mode.TRANSACTION)

    async def expire_run_leases(self, owner_prefix: str, *, keep: str, now: datetime | None = None) -> list[str]:
        """End at once the leases of active runs whose owner starts with ``owner_prefix``, except
        ``keep``'s (a restarted replica's previous process is known dead); returns their ids."""
        t = now_ms(now)
        sql = self._d.sql(
            "UPDATE {p}flue_runs SET lease_expires_ms = ? WHERE status = 'active' AND lease_expires_ms >= ? "
            "AND substr(owner, 1, ?) = ? AND owner <> ? RETURNING run_id"
        )
        rows = await self._db.run(single(sql, (t - 1, t, len(owner_prefix), owner_prefix, keep), "all"),
                                  Mode.WRITE)
        return [r[0] for r in rows]

    async def get_run(self, run_id: str) -> RunRecord | None:
        row = await self._db.run(single(self._d.sql(_RUN), (run_id,), "one"), Mode.READ)
        return None if row is None else self._run(row)

    async def list_runs(
        self, *, workflow_name: str | None = None, status: RunStatus | None = None, limit: int = 50,
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
            where.append("(started_ms, run_id) < (?, ?)")
            params += [started_ms, run_id]
        sql = f"SELECT {_RUN_COLUMNS} FROM {{p}}flue_runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY started_ms DESC, run_id DESC LIMIT ?"
        params.append(n + 1)
        rows = await self._db.run(single(self._d.sql(sql), params, "all"), Mode.READ)
        page = rows[:n]
        next_cursor = encode_run_cursor(page[-1][9], page[-1][0]) if len(rows) > n else None
        return [self._run(r) for r in page], next_cursor


def _meta(path: str, row: tuple[Any, ...]) -> StreamMeta:
    length, closed, created_at = row
    return StreamMeta(path=path, next_offset=format_offset(length), length=length, closed=bool(closed),
                      created_at=created_at)


_CREATE_STREAM = "INSERT INTO {p}flue_streams (path, created_at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING"
_STREAM_META = "SELECT length, closed, created_at FROM {p}flue_streams WHERE path = ?"
_BUMP = "UPDATE {p}flue_streams SET length = length + ? WHERE path = ? AND closed = FALSE RETURNING length"
_CLOSE_BUMP = (
    "UPDATE {p}flue_streams SET length = length + ?, closed = TRUE WHERE path = ? AND closed = FALSE RETURNING length"
)


def append_rows(
    d: Dialect, path: str, texts: list[str], *, create: bool | Literal["first"] = False, close: bool = False
) -> Op[int]:
    """Append JSON texts to a stream inside the caller's transaction; return the new length.

    The stream row is the allocator: it is bumped first (``UPDATE ... RETURNING``, which holds
    the row till the commit), so concurrent appenders get consecutive seqs.
    ``create``: make the stream if it is missing (lifecycle events of submissions): after the
    bump finds no row, or first when the caller expects a new stream (``create="first"``: an
    instance's first admission), so an existing stream costs no insert.
    ``close``: close the stream after these (its last) events.
    """
    if create == "first" or (create and not texts and not close):
        yield Stmt(d.sql(_CREATE_STREAM), (path, utc_now_iso()))
        create = False
    if not texts and not close:
        row = yield Stmt(d.sql("SELECT length, closed FROM {p}flue_streams WHERE path = ?"), (path,), "one")
        if row is None:
            raise StreamNotFound(path)
        if row[1]:
            raise StreamClosed(f"stream {path!r} is closed")
        return int(row[0])
    bump = d.sql(_CLOSE_BUMP if close else _BUMP)
    bumped = yield Stmt(bump, (len(texts), path), "one")
    if bumped is None and create:
        yield Stmt(d.sql(_CREATE_STREAM), (path, utc_now_iso()))
        bumped = yield Stmt(bump, (len(texts), path), "one")
    if bumped is None:  # missing or closed: say which
        row = yield Stmt(d.sql("SELECT closed FROM {p}flue_streams WHERE path = ?"), (path,), "one")
        if row is None:
            raise StreamNotFound(path)
        raise StreamClosed(f"stream {path!r} is closed")
    end = int(bumped[0])
    if texts:
        start = end - len(texts)
        yield Stmt(
            d.sql("INSERT INTO {p}flue_events (path, seq, data) VALUES (?, ?, ?)"),
            [(path, start + i, d.json(t)) for i, t in enumerate(texts, start=1)],
            many=True,
        )
    yield Notify("s", path)
    return end


class SQLEventStreamStore:
    """Streams are rows in ``flue_streams``; events are ``(path, seq)`` rows numbered from 1.

    The offset after event ``n`` is ``format_offset(n)``. ``length`` on the stream
    row allocates seqs (:func:`append_rows`). Subscribers are woken by appends in
    this process directly and by other processes' through the adapter's
    :class:`~flue.persistence.sql.core.Changes`.
    """

    def __init__(self, db: Database, changes: Changes) -> None:
        self._db, self._d = db, db.dialect
        self._batched = getattr(db, "run_batched", db.run)
        self._changes = changes
        self._listeners = Listeners()
        changes.follow("s", self._listeners)

    @property
    def live_poll_interval(self) -> float | None:
        """How often live readers must re-read (``None``: ``subscribe`` reports every append)."""
        return self._changes.live_poll_interval

    def appended(self, path: str) -> None:
        """Wake this store's subscribers of ``path`` after an append made in another store's transaction."""
        self._listeners.notify(path)

    async def create_stream(self, path: str) -> StreamMeta:
        d = self._d

        def op() -> Op[StreamMeta]:
            yield Stmt(d.sql(_CREATE_STREAM), (path, utc_now_iso()))
            return _meta(path, (yield Stmt(d.sql(_STREAM_META), (path,), "one")))

        return await self._db.run(op(), Mode.WRITE)

    async def append_events(self, path: str, events: list[dict[str, Any]]) -> str:
        if not all(isinstance(e, dict) for e in events):
            raise TypeError("events must be JSON objects (dicts)")
        texts = [dumps(e) for e in events]
        length = await self._batched(append_rows(self._d, path, texts), Mode.TRANSACTION)
        if texts:
            self._listeners.notify(path)
        return format_offset(length)

    async def read_events(self, path: str, offset: str = OFFSET_BEFORE_START, limit: int | None = None) -> ReadResult:
        start = parse_offset(offset)
        if limit is not None and limit < 1:
            raise ValueError("limit must be at least 1")
        d = self._d
        sql = "SELECT seq, data FROM {p}flue_events WHERE path = ? AND seq > ? ORDER BY seq"
        params: tuple[Any, ...] = (path, start)
        if limit is not None:
            sql += " LIMIT ?"
            params += (limit,)

        def op() -> Op[tuple[Any, list[tuple[int, Any]]]]:
            # Events first, stream row second: the row is at least as new as the events,
            # so up_to_date is never claimed for events not returned (even without a snapshot).
            rows = yield Stmt(d.sql(sql), params, "all")
            stream = yield Stmt(d.sql("SELECT length, closed FROM {p}flue_streams WHERE path = ?"), (path,), "one")
            return stream, [(seq, d.loads(data)) for seq, data in rows]

        stream, rows = await self._db.run(op(), Mode.SNAPSHOT)
        if stream is None:
            return ReadResult(events=[], next_offset=format_offset(start), up_to_date=True, closed=False)
        length, closed = stream
        position = rows[-1][0] if rows else start
        return ReadResult(
            events=[e for _, e in rows],
            next_offset=format_offset(position),
            up_to_date=position >= length,
            closed=bool(closed),
        )

    async def close_stream(self, path: str) -> None:
        d = self._d

        def op() -> Op[bool]:
            row = yield Stmt(d.sql("SELECT closed FROM {p}flue_streams WHERE path = ?{lock}"), (path,), "one")
            if row is None:
                raise StreamNotFound(path)
            if row[0]:
                return False
            yield Stmt(d.sql("UPDATE {p}flue_streams SET closed = TRUE WHERE path = ?"), (path,))
            yield Notify("s", path)
            return True

        if await self._db.run(op(), Mode.TRANSACTION):
            self._listeners.notify(path)

    async def get_stream_meta(self, path: str) -> StreamMeta | None:
        row = await self._db.run(single(self._d.sql(_STREAM_META), (path,), "one"), Mode.READ)
        return None if row is None else _meta(path, row)

    def subscribe(self, path: str, listener: Callable[[str], None]) -> Callable[[], None]:
        unsubscribe = self._listeners.add(path, listener)
        self._changes.ensure_started("s")
        return unsubscribe


class SQLSnapshotStore:
    def __init__(self, db: Database) -> None:
        self._db, self._d = db, db.dialect
        self._save = self._d.sql(_stamped_upsert(self._d, "flue_snapshots", "scope"))

    async def save_snapshot(self, scope: str, data: bytes) -> None:
        await self._db.run(single(self._save, (scope, bytes(data), now_ms())), Mode.WRITE)

    async def load_snapshot(self, scope: str) -> bytes | None:
        sql = self._d.sql("SELECT data FROM {p}flue_snapshots WHERE scope = ?")
        row = await self._db.run(single(sql, (scope,), "one"), Mode.READ)
        return None if row is None else bytes(row[0])

    async def delete_snapshot(self, scope: str) -> None:
        sql = self._d.sql("DELETE FROM {p}flue_snapshots WHERE scope = ?")
        await self._db.run(single(sql, (scope,)), Mode.WRITE)
