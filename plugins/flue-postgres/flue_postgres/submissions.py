"""PostgreSQL submission store (contract: ``flue.persistence.submissions``).

Concurrency, replica against replica:

- admission upserts the instance's counter row, which row-locks it until
  commit, so admissions to one instance commit in ``seq`` order;
- a claim selects the runnable head ``FOR UPDATE SKIP LOCKED``: a head being
  claimed elsewhere is skipped, and once that claim commits PostgreSQL
  re-checks the row (now ``running`` with a live lease) and drops it, so two
  coordinators never both claim it;
- settle and journal appends lock the submission row, so they cannot
  interleave with a takeover.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg

from flue.persistence.base import StreamClosed
from flue.persistence.kit import Listeners, now_ms
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
from flue_postgres.notify import Notifier
from flue_postgres.pool import ConnectionPool
from flue_postgres.stores import PgEventStreamStore, append_rows, as_json

_COLS = ", ".join(SUBMISSION_COLUMNS)
_S_COLS = ", ".join("s." + c for c in SUBMISSION_COLUMNS)


class _Replayed(Exception):
    """Abort the admission transaction: a concurrent admission of the same dispatch id won."""


class PgSubmissionStore:
    def __init__(
        self, pool: ConnectionPool, schema: str, notifier: Notifier, streams: PgEventStreamStore | None = None
    ) -> None:
        self._pool, self._s = pool, schema
        self._listeners = Listeners()
        self._notifier = notifier
        self._streams = streams  # lifecycle events go to these streams' subscribers too
        notifier.on("q", lambda instance: self._listeners.notify("*", instance))
        # Each busy instance row points at its head (head_seq, head_ms = its admission time),
        # indexed by head_ms: a claim walks heads oldest first, not the whole backlog.
        self._heads = (
            f"SELECT {_S_COLS} FROM {schema}.flue_instances i "
            f"JOIN {schema}.flue_submissions s ON s.instance = i.instance AND s.seq = i.head_seq "
            "WHERE i.head_seq IS NOT NULL AND (s.status = 'queued' OR s.lease_expires_ms <= %(now)s)"
        )

    async def _advance_head(self, conn: psycopg.AsyncConnection[Any], instance: str) -> None:
        """The head left the active set: point the instance at its next active submission.

        The instance row is locked first, in a statement of its own: an admission in flight
        holds it, and only a statement started after that admission commits sees the new
        submission (READ COMMITTED snapshots are per statement). Advancing in one UPDATE
        would wait for the lock but compute the next head from the older snapshot, miss
        the admission, and let a later one overtake it."""
        await conn.execute(f"SELECT 1 FROM {self._s}.flue_instances WHERE instance = %s FOR UPDATE", (instance,))
        await conn.execute(
            f"UPDATE {self._s}.flue_instances SET (head_seq, head_ms) = (SELECT seq, accepted_ms "
            f"FROM {self._s}.flue_submissions WHERE instance = %s AND status IN ('queued', 'running') "
            "ORDER BY seq LIMIT 1) WHERE instance = %s",
            (instance, instance),
        )

    async def _record(self, conn: psycopg.AsyncConnection[Any], sub: Submission, events: list[dict[str, Any]]) -> None:
        """Append lifecycle events to the instance's stream in the current transaction."""
        try:
            await append_rows(conn, self._s, self._notifier, sub.instance, [as_json(e) for e in events], create=True)
        except StreamClosed:
            pass  # a closed stream takes no more events; the state change still stands

    def _appended(self, instance: str) -> None:
        self._listeners.notify("*", instance)
        if self._streams is not None:
            self._streams.appended(instance)

    async def _one(self, conn: psycopg.AsyncConnection[Any], where: str, params: Any) -> Submission | None:
        cur = await conn.execute(f"SELECT {_COLS} FROM {self._s}.flue_submissions WHERE {where}", params)
        row = await cur.fetchone()
        return None if row is None else submission_from_row(row)

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
        async with self._pool.connection() as conn:
            try:
                async with conn.transaction():
                    sub, created = await self._admit(conn, plan)
            except _Replayed:
                existing = await self._one(conn, "dispatch_id = %s", (plan.dispatch_id,))
                assert existing is not None
                check_replay(existing, plan)
                sub, created = existing, False
        if created:
            self._appended(instance)
        return sub, created

    async def _admit(self, conn: psycopg.AsyncConnection[Any], plan: Admission) -> tuple[Submission, bool]:
        s = self._s
        if plan.dispatch_id is not None:
            existing = await self._one(conn, "dispatch_id = %s", (plan.dispatch_id,))
            if existing is not None:
                check_replay(existing, plan)
                return existing, False
        cur = await conn.execute(
            f"INSERT INTO {s}.flue_instances AS i (instance, next_seq, head_seq, head_ms) VALUES (%s, 1, 1, %s) "
            "ON CONFLICT (instance) DO UPDATE SET next_seq = i.next_seq + 1, "
            "head_ms = CASE WHEN i.head_seq IS NULL THEN excluded.head_ms ELSE i.head_ms END, "
            "head_seq = COALESCE(i.head_seq, i.next_seq + 1) RETURNING next_seq, head_seq",
            (plan.instance, plan.accepted_ms),
        )
        row = await cur.fetchone()
        assert row is not None
        # the upsert holds the instance row: the count is exact; raising rolls the seq bump back
        plan.check_bound(row["next_seq"] - row["head_seq"] + 1)
        cur = await conn.execute(
            f"INSERT INTO {s}.flue_submissions (submission_id, instance, seq, kind, dispatch_id, input, input_hash, "
            "status, attempts, max_attempts, accepted_ms, deadline_ms) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, 'queued', 0, %s, %s, %s) "
            f"ON CONFLICT (dispatch_id) DO NOTHING RETURNING {_COLS}",
            (plan.submission_id, plan.instance, row["next_seq"], plan.kind, plan.dispatch_id,
             as_json(plan.input), plan.input_hash, plan.max_attempts, plan.accepted_ms, plan.deadline_ms),
        )
        inserted = await cur.fetchone()
        if inserted is None:
            raise _Replayed  # roll back the seq bump; the caller reads the winner
        await self._notifier.send(conn, "q", plan.instance)
        sub = submission_from_row(inserted)
        await self._record(conn, sub, [admission_event(sub)])
        return sub, True

    async def count_unsettled(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT COALESCE(SUM(next_seq - head_seq + 1), 0) AS n FROM {self._s}.flue_instances "
                "WHERE head_seq IS NOT NULL"
            )
            row = await cur.fetchone()
        assert row is not None
        return int(row["n"])

    async def _take(
        self, conn: psycopg.AsyncConnection[Any], row: dict[str, Any], owner: str, lease_ms: int, now: int
    ) -> Submission:
        error = exhaustion_error(
            attempts=row["attempts"], max_attempts=row["max_attempts"], deadline_ms=row["deadline_ms"], now=now
        )
        if error is not None:
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_submissions SET status = 'failed', error = %s, settled_ms = %s, "
                f"lease_owner = %s, lease_expires_ms = NULL WHERE submission_id = %s RETURNING {_COLS}",
                (as_json(error), now, owner, row["submission_id"]),
            )
        else:
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_submissions SET status = 'running', attempts = attempts + 1, "
                f"lease_owner = %s, lease_expires_ms = %s WHERE submission_id = %s RETURNING {_COLS}",
                (owner, now + lease_ms, row["submission_id"]),
            )
        updated = await cur.fetchone()
        assert updated is not None
        sub = submission_from_row(updated)
        if error is not None:
            await self._advance_head(conn, sub.instance)
            await self._record(conn, sub, settlement_events(sub))
        return sub

    async def _claim(self, owner: str, lease_s: float, now: datetime | None, extra: str, params: dict[str, Any]
                     ) -> Submission | None:
        t = now_ms(now)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"{self._heads}{extra} ORDER BY i.head_ms, i.instance LIMIT 1 FOR UPDATE OF s SKIP LOCKED",
                {"now": t, **params},
            )
            row = await cur.fetchone()
            sub = None if row is None else await self._take(conn, row, owner, int(lease_s * 1000), t)
            if sub is not None and sub.status == "failed":
                await self._notifier.send(conn, "q", sub.instance)
        if sub is not None and sub.status == "failed":
            self._appended(sub.instance)
        return sub

    async def claim_next(
        self, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        return await self._claim(owner, lease_s, now, "", {})

    async def claim(
        self, submission_id: str, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        return await self._claim(owner, lease_s, now, " AND s.submission_id = %(id)s", {"id": submission_id})

    async def renew(
        self, owner: str, submission_ids: list[str], *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> list[str]:
        ids = list(dict.fromkeys(submission_ids))
        if not ids:
            return []
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_submissions SET lease_expires_ms = %s WHERE submission_id = ANY(%s) "
                "AND status = 'running' AND lease_owner = %s RETURNING submission_id",
                (now_ms(now) + int(lease_s * 1000), ids, owner),
            )
            renewed = {r["submission_id"] for r in await cur.fetchall()}
        return [i for i in ids if i in renewed]

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
        result_doc, error_doc = as_json(result), None if error is None else as_json(error)
        t = now_ms(now)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"SELECT status, lease_owner, instance, attempts FROM {self._s}.flue_submissions "
                "WHERE submission_id = %s FOR UPDATE",
                (submission_id,),
            )
            row = await cur.fetchone()
            if row is None or row["lease_owner"] != owner or (attempt is not None and row["attempts"] != attempt):
                return False
            if row["status"] != "running":
                return row["status"] == status  # a replayed settle by the same owner
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_submissions SET status = %s, result = %s, error = %s, settled_ms = %s, "
                f"lease_expires_ms = NULL WHERE submission_id = %s RETURNING {_COLS}",
                (status, result_doc, error_doc, t, submission_id),
            )
            updated = await cur.fetchone()
            assert updated is not None
            settled = submission_from_row(updated)
            await self._advance_head(conn, settled.instance)
            await self._record(conn, settled, settlement_events(settled, event_index=event_index))
            await self._notifier.send(conn, "q", row["instance"])
        self._appended(row["instance"])
        return True

    async def get(self, submission_id: str) -> Submission | None:
        async with self._pool.connection() as conn:
            return await self._one(conn, "submission_id = %s", (submission_id,))

    async def get_by_dispatch_id(self, dispatch_id: str) -> Submission | None:
        async with self._pool.connection() as conn:
            return await self._one(conn, "dispatch_id = %s", (dispatch_id,))

    async def list_for_instance(self, instance: str) -> list[Submission]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLS} FROM {self._s}.flue_submissions WHERE instance = %s ORDER BY seq", (instance,)
            )
            return [submission_from_row(r) for r in await cur.fetchall()]

    async def append_journal(self, submission_id: str, attempt: int, entry: dict[str, Any]) -> bool:
        if not isinstance(entry, dict):
            raise TypeError("journal entries must be JSON objects (dicts)")
        doc = as_json(entry)
        async with self._pool.connection() as conn, conn.transaction():
            # Locking the submission row fences off takeovers and serializes appenders.
            cur = await conn.execute(
                f"SELECT 1 FROM {self._s}.flue_submissions WHERE submission_id = %s AND status = 'running' "
                "AND attempts = %s FOR UPDATE",
                (submission_id, attempt),
            )
            if await cur.fetchone() is None:
                return False
            await conn.execute(
                f"INSERT INTO {self._s}.flue_journal (submission_id, seq, attempt, entry) VALUES (%s, "
                f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM {self._s}.flue_journal WHERE submission_id = %s), %s, %s)",
                (submission_id, submission_id, attempt, doc),
            )
        return True

    async def journal(self, submission_id: str) -> list[dict[str, Any]]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT entry FROM {self._s}.flue_journal WHERE submission_id = %s ORDER BY seq", (submission_id,)
            )
            return [r["entry"] for r in await cur.fetchall()]

    async def expire_leases(self, owner_prefix: str, *, keep: str, now: datetime | None = None) -> list[str]:
        """End at once the leases of running submissions whose owner starts with ``owner_prefix``,
        except ``keep``'s (a restarted replica's previous process is known dead); returns their ids."""
        t = now_ms(now)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                f"UPDATE {self._s}.flue_submissions SET lease_expires_ms = %s WHERE status = 'running' "
                "AND left(lease_owner, %s) = %s AND lease_owner <> %s AND lease_expires_ms >= %s "
                "RETURNING submission_id, instance",
                (t - 1, len(owner_prefix), owner_prefix, keep, t),
            )
            rows = await cur.fetchall()
            instances = list(dict.fromkeys(r["instance"] for r in rows))
            for instance in instances:
                await self._notifier.send(conn, "q", instance)  # every replica's coordinator: claim them
        for instance in instances:
            self._listeners.notify("*", instance)
        return [r["submission_id"] for r in rows]

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        self._notifier.ensure_started()
        return self._listeners.add("*", listener)

