"""SQLite submission store (the contract is in ``flue.persistence.submissions``).

Every mutating method is one ``BEGIN IMMEDIATE`` transaction on the adapter's
worker thread. The write lock is taken before the first read, so "find the
head, check it, update it" cannot interleave with another claimer -- in this
process (one thread serializes everything) or in another process sharing the
database file (SQLite's lock serializes the transactions).

Each instance row keeps its head (``head_seq``, and ``head_ms`` its admission
time; set by the first admission to an idle instance, advanced when the head
settles), indexed by ``head_ms``: a claim walks busy instances oldest head
first and stops at the first that is runnable, skipping only heads that are
running now -- its cost does not grow with the backlog.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from flue.persistence.base import StreamClosed
from flue.persistence.kit import Listeners, dumps, iso_to_ms, now_ms
from flue.persistence.sqlite_stores import append_rows
from flue.persistence.submissions import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT_S,
    LEASE_S,
    SUBMISSION_COLUMNS,
    Admission,
    SettledStatus,
    Submission,
    SubmissionKind,
    admission_event,
    check_replay,
    check_settle_status,
    exhaustion_error,
    plan_admission,
    settlement_events,
    submission_from_row,
)

if TYPE_CHECKING:
    from flue.persistence.sqlite import SQLiteWorker
    from flue.persistence.sqlite_stores import SQLiteEventStreamStore

_COLS = ", ".join(SUBMISSION_COLUMNS)
_JSON_COLUMNS = ("input", "result", "error")
# The runnable heads: each busy instance's head, queued or with a dead lease.
_HEADS = (
    f"SELECT {', '.join('s.' + c for c in SUBMISSION_COLUMNS)} FROM flue_instances i "
    "JOIN flue_submissions s ON s.instance = i.instance AND s.seq = i.head_seq "
    "WHERE i.head_seq IS NOT NULL AND (s.status = 'queued' OR s.lease_expires_ms <= :now)"
)
_OLDEST = " ORDER BY i.head_ms, i.instance LIMIT 1"
# per busy instance, its head and everything admitted after it are unsettled
_UNSETTLED = "SELECT COALESCE(SUM(next_seq - head_seq + 1), 0) FROM flue_instances WHERE head_seq IS NOT NULL"


def _advance_head(conn: sqlite3.Connection, instance: str) -> None:
    """The head left the active set: point the instance at its next active submission."""
    conn.execute(
        "UPDATE flue_instances SET (head_seq, head_ms) = (SELECT seq, accepted_ms FROM flue_submissions "
        "WHERE instance = ? AND status IN ('queued', 'running') ORDER BY seq LIMIT 1) WHERE instance = ?",
        (instance, instance),
    )


def _row(conn: sqlite3.Connection, where: str, params: Any) -> Submission | None:
    cur = conn.execute(f"SELECT {_COLS} FROM flue_submissions WHERE {where}", params)
    row = cur.fetchone()
    return None if row is None else _decode(row)


def _decode(row: tuple[Any, ...]) -> Submission:
    data = dict(zip(SUBMISSION_COLUMNS, row, strict=True))
    for col in _JSON_COLUMNS:
        if data[col] is not None:
            data[col] = json.loads(data[col])
    return submission_from_row(data)


def _record(conn: sqlite3.Connection, sub: Submission, events: list[dict[str, Any]]) -> None:
    """Append lifecycle events to the instance's stream in the current transaction."""
    try:
        append_rows(conn, sub.instance, [dumps(e) for e in events], create=True)
    except StreamClosed:
        pass  # a closed stream takes no more events; the state change still stands


def _take(conn: sqlite3.Connection, sub: Submission, owner: str, lease_ms: int, now: int) -> Submission:
    """Claim ``sub`` (a runnable head) for ``owner``, or settle it failed if exhausted."""
    deadline = iso_to_ms(sub.deadline_at)
    error = exhaustion_error(attempts=sub.attempts, max_attempts=sub.max_attempts, deadline_ms=deadline, now=now)
    if error is not None:
        conn.execute(
            "UPDATE flue_submissions SET status = 'failed', error = ?, settled_ms = ?, lease_owner = ?, "
            "lease_expires_ms = NULL WHERE submission_id = ?",
            (dumps(error), now, owner, sub.submission_id),
        )
    else:
        conn.execute(
            "UPDATE flue_submissions SET status = 'running', attempts = attempts + 1, lease_owner = ?, "
            "lease_expires_ms = ? WHERE submission_id = ?",
            (owner, now + lease_ms, sub.submission_id),
        )
    result = _row(conn, "submission_id = ?", (sub.submission_id,))
    assert result is not None
    if error is not None:
        _advance_head(conn, sub.instance)
        _record(conn, result, settlement_events(result))
    return result


class SQLiteSubmissionStore:
    def __init__(self, worker: SQLiteWorker, streams: SQLiteEventStreamStore | None = None) -> None:
        self._db = worker
        self._listeners = Listeners()
        self._streams = streams  # lifecycle events go to these streams' subscribers too

    def _appended(self, instance: str) -> None:
        self._listeners.notify("*", instance)
        if self._streams is not None:
            self._streams.appended(instance)

    async def admit(
        self,
        instance: str,
        input: Any,
        *,
        kind: SubmissionKind = "prompt",
        dispatch_id: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_queued: int | None = None,
        now: datetime | None = None,
    ) -> tuple[Submission, bool]:
        plan = plan_admission(
            instance, input, kind=kind, dispatch_id=dispatch_id, max_attempts=max_attempts,
            timeout_s=timeout_s, now=now, max_queued=max_queued,
        )
        sub, created = await self._db.write(lambda conn: self._admit(conn, plan))
        if created:
            self._appended(instance)
        return sub, created

    @staticmethod
    def _admit(conn: sqlite3.Connection, plan: Admission) -> tuple[Submission, bool]:
        if plan.dispatch_id is not None:
            existing = _row(conn, "dispatch_id = ?", (plan.dispatch_id,))
            if existing is not None:
                check_replay(existing, plan)
                return existing, False
        # The per-instance counter row orders admissions; its update is serialized
        # by the write lock, so seq order is commit order.
        seq, head = conn.execute(
            "INSERT INTO flue_instances (instance, next_seq, head_seq, head_ms) VALUES (?, 1, 1, ?) "
            "ON CONFLICT (instance) DO UPDATE SET next_seq = next_seq + 1, "
            "head_ms = CASE WHEN head_seq IS NULL THEN excluded.head_ms ELSE head_ms END, "
            "head_seq = COALESCE(head_seq, next_seq + 1) RETURNING next_seq, head_seq",
            (plan.instance, plan.accepted_ms),
        ).fetchone()
        # every seq from the head on is unsettled (only heads settle): the bound is exact;
        # raising rolls the whole transaction back
        plan.check_bound(seq - head + 1)
        conn.execute(
            "INSERT INTO flue_submissions (submission_id, instance, seq, kind, dispatch_id, input, input_hash, "
            "status, attempts, max_attempts, accepted_ms, deadline_ms) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?)",
            (plan.submission_id, plan.instance, seq, plan.kind, plan.dispatch_id, plan.input_json,
             plan.input_hash, plan.max_attempts, plan.accepted_ms, plan.deadline_ms),
        )
        sub = _row(conn, "submission_id = ?", (plan.submission_id,))
        assert sub is not None
        _record(conn, sub, [admission_event(sub)])
        return sub, True

    async def count_unsettled(self) -> int:
        row = await self._db.run(lambda conn: conn.execute(_UNSETTLED).fetchone())
        return int(row[0])

    async def claim_next(
        self, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        t, lease_ms = now_ms(now), int(lease_s * 1000)

        def op(conn: sqlite3.Connection) -> Submission | None:
            row = conn.execute(_HEADS + _OLDEST, {"now": t}).fetchone()
            return None if row is None else _take(conn, _decode(row), owner, lease_ms, t)

        return self._after_claim(await self._db.write(op))

    async def claim(
        self, submission_id: str, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        t, lease_ms = now_ms(now), int(lease_s * 1000)

        def op(conn: sqlite3.Connection) -> Submission | None:
            row = conn.execute(f"{_HEADS} AND s.submission_id = :id", {"now": t, "id": submission_id}).fetchone()
            return None if row is None else _take(conn, _decode(row), owner, lease_ms, t)

        return self._after_claim(await self._db.write(op))

    def _after_claim(self, sub: Submission | None) -> Submission | None:
        if sub is not None and sub.status == "failed":
            self._appended(sub.instance)  # the instance's next head became runnable
        return sub

    async def renew(
        self, owner: str, submission_ids: list[str], *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> list[str]:
        ids = list(dict.fromkeys(submission_ids))
        if not ids:
            return []
        expires = now_ms(now) + int(lease_s * 1000)
        marks = ", ".join("?" for _ in ids)

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"UPDATE flue_submissions SET lease_expires_ms = ? WHERE submission_id IN ({marks}) "
                "AND status = 'running' AND lease_owner = ? RETURNING submission_id",
                (expires, *ids, owner),
            ).fetchall()
            renewed = {r[0] for r in rows}
            return [i for i in ids if i in renewed]

        return await self._db.write(op)

    async def settle(
        self,
        submission_id: str,
        owner: str,
        *,
        status: SettledStatus,
        result: Any = None,
        error: dict[str, Any] | None = None,
        attempt: int | None = None,
        now: datetime | None = None,
        event_index: int | None = None,
    ) -> bool:
        check_settle_status(status)
        result_json = dumps(result)
        error_json = None if error is None else dumps(error)
        t = now_ms(now)

        def op(conn: sqlite3.Connection) -> tuple[bool, str | None]:
            row = conn.execute(
                "SELECT status, lease_owner, attempts FROM flue_submissions WHERE submission_id = ?", (submission_id,)
            ).fetchone()
            if row is None or row[1] != owner or (attempt is not None and row[2] != attempt):
                return False, None
            if row[0] != "running":
                return row[0] == status, None  # a replayed settle by the same owner
            conn.execute(
                "UPDATE flue_submissions SET status = ?, result = ?, error = ?, settled_ms = ?, "
                "lease_expires_ms = NULL WHERE submission_id = ?",
                (status, result_json, error_json, t, submission_id),
            )
            sub = _row(conn, "submission_id = ?", (submission_id,))
            assert sub is not None
            _advance_head(conn, sub.instance)
            _record(conn, sub, settlement_events(sub, event_index=event_index))
            return True, sub.instance

        ok, instance = await self._db.write(op)
        if instance is not None:
            self._appended(instance)
        return ok

    async def get(self, submission_id: str) -> Submission | None:
        return await self._db.run(lambda conn: _row(conn, "submission_id = ?", (submission_id,)))

    async def get_by_dispatch_id(self, dispatch_id: str) -> Submission | None:
        return await self._db.run(lambda conn: _row(conn, "dispatch_id = ?", (dispatch_id,)))

    async def list_for_instance(self, instance: str) -> list[Submission]:
        def op(conn: sqlite3.Connection) -> list[Submission]:
            cur = conn.execute(f"SELECT {_COLS} FROM flue_submissions WHERE instance = ? ORDER BY seq", (instance,))
            return [_decode(r) for r in cur]

        return await self._db.run(op)

    async def append_journal(self, submission_id: str, attempt: int, entry: dict[str, Any]) -> bool:
        if not isinstance(entry, dict):
            raise TypeError("journal entries must be JSON objects (dicts)")
        text = dumps(entry)
        t = now_ms()

        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM flue_submissions WHERE submission_id = ? AND status = 'running' AND attempts = ?",
                (submission_id, attempt),
            ).fetchone()
            if row is None:
                return False
            conn.execute(
                "INSERT INTO flue_journal (submission_id, seq, attempt, entry, recorded_ms) "
                "VALUES (?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM flue_journal WHERE submission_id = ?), ?, ?, ?)",
                (submission_id, submission_id, attempt, text, t),
            )
            return True

        return await self._db.write(op)

    async def journal(self, submission_id: str) -> list[dict[str, Any]]:
        def op(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            cur = conn.execute("SELECT entry FROM flue_journal WHERE submission_id = ? ORDER BY seq", (submission_id,))
            return [json.loads(r[0]) for r in cur]

        return await self._db.run(op)

    async def expire_leases(self, owner_prefix: str, *, keep: str, now: datetime | None = None) -> list[str]:
        """End at once the leases of running submissions whose owner starts with ``owner_prefix``,
        except ``keep``'s: a restarted replica's previous process is known dead
        (:mod:`flue.runtime.replica`), so its work is claimable now. Returns their ids."""
        t = now_ms(now)

        def op(conn: sqlite3.Connection) -> list[tuple[str, str]]:
            return conn.execute(
                "UPDATE flue_submissions SET lease_expires_ms = ? WHERE status = 'running' "
                "AND substr(lease_owner, 1, ?) = ? AND lease_owner != ? AND lease_expires_ms >= ? "
                "RETURNING submission_id, instance",
                (t - 1, len(owner_prefix), owner_prefix, keep, t),
            ).fetchall()

        rows = await self._db.write(op)
        for instance in dict.fromkeys(instance for _, instance in rows):
            self._listeners.notify("*", instance)  # coordinators here: claim them now
        return [sid for sid, _ in rows]

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        return self._listeners.add("*", listener)
