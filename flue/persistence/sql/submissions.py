"""The submission store on the SQL core (contract: :mod:`flue.persistence.submissions`).

Each busy instance row keeps its head (``head_seq``, and ``head_ms`` its
admission time; set by the first admission to an idle instance, advanced when
the head settles), indexed by ``head_ms``: a claim walks busy instances oldest
head first and stops at the first that is runnable, skipping only heads that
are running now -- its cost does not grow with the backlog.

Concurrency, process against process (every mutating method is one
``Mode.TRANSACTION``):

- admission upserts the instance's counter row, which serializes admissions to
  one instance (a row lock until commit, or SQLite's write lock), so they
  commit in ``seq`` order;
- a claim selects the runnable head ``{skip:s}`` (``FOR UPDATE OF s SKIP
  LOCKED``): a head being claimed elsewhere is skipped, and once that claim
  commits the database re-checks the row (now ``running`` with a live lease)
  and drops it, so two coordinators never both claim it;
- settle and journal appends lock the submission row (``{lock}``), so they
  cannot interleave with a takeover.

A claim after one that found nothing first looks for a runnable head with a
plain read (no write lock, no row lock): the claim after each settlement and an
idle server's polls write nothing. A head admitted just after that look wakes
the coordinator again, as one admitted just after a claim's transaction would.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from flue.persistence.base import StreamClosed
from flue.persistence.kit import Listeners, dumps, iso_to_ms, now_ms
from flue.persistence.sql.core import QUEUE_KEY, Changes, Database, Mode, Notify, Op, Stmt, single
from flue.persistence.sql.stores import SQLEventStreamStore, append_rows
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

_COLS = ", ".join(SUBMISSION_COLUMNS)
_JSON_COLUMNS = ("input", "result", "error")
# The runnable heads: each busy instance's head, queued or with a dead lease.
_RUNNABLE = (
    "FROM {p}flue_instances i JOIN {p}flue_submissions s ON s.instance = i.instance AND s.seq = i.head_seq "
    "WHERE i.head_seq IS NOT NULL AND (s.status = 'queued' OR s.lease_expires_ms <= ?)"
)
_HEADS = f"SELECT {', '.join('s.' + c for c in SUBMISSION_COLUMNS)} {_RUNNABLE}"
_ANY_RUNNABLE = f"SELECT 1 {_RUNNABLE} LIMIT 1"
_OLDEST = " ORDER BY i.head_ms, i.instance LIMIT 1{skip:s}"
# Per busy instance, its head and everything admitted after it are unsettled.
_UNSETTLED = "SELECT COALESCE(SUM(next_seq - head_seq + 1), 0) FROM {p}flue_instances WHERE head_seq IS NOT NULL"
# The per-instance counter row orders admissions: the first to an idle instance becomes its head.
_BUMP = (
    "INSERT INTO {p}flue_instances AS i (instance, next_seq, head_seq, head_ms) VALUES (?, 1, 1, ?) "
    "ON CONFLICT (instance) DO UPDATE SET next_seq = i.next_seq + 1, "
    "head_ms = CASE WHEN i.head_seq IS NULL THEN excluded.head_ms ELSE i.head_ms END, "
    "head_seq = COALESCE(i.head_seq, i.next_seq + 1) RETURNING next_seq, head_seq"
)
_INSERT = (
    "INSERT INTO {p}flue_submissions (submission_id, instance, seq, kind, dispatch_id, input, input_hash, "
    "status, attempts, max_attempts, accepted_ms, deadline_ms, lease_owner, lease_expires_ms) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    f"ON CONFLICT (dispatch_id) DO NOTHING RETURNING {_COLS}"
)


class Replayed(Exception):
    """Abort the admission transaction: a concurrent admission of the same dispatch id won."""


class SQLSubmissionStore:
    def __init__(self, db: Database, changes: Changes, streams: SQLEventStreamStore | None = None) -> None:
        self._db, self._d = db, db.dialect
        self._changes = changes
        self._listeners = Listeners()
        self._streams = streams  # lifecycle events go to these streams' subscribers too
        self._found = False  # whether the last claim_next() found a head
        changes.follow("q", self._listeners)

    def _appended(self, instance: str, *, queued: bool = True) -> None:
        """Wake this process's coordinators (``queued``: a head may be runnable) and the readers
        of the instance's stream."""
        if queued:
            self._listeners.notify(QUEUE_KEY, instance)
        if self._streams is not None:
            self._streams.appended(instance)

    # -- operations shared by the methods ------------------------------------------

    def _decode(self, row: tuple[Any, ...]) -> Submission:
        data = dict(zip(SUBMISSION_COLUMNS, row, strict=True))
        for col in _JSON_COLUMNS:
            data[col] = self._d.loads(data[col])
        return submission_from_row(data)

    def _one(self, where: str, params: Any) -> Op[Submission | None]:
        row = yield Stmt(self._d.sql(f"SELECT {_COLS} FROM {{p}}flue_submissions WHERE {where}"), params, "one")
        return None if row is None else self._decode(row)

    def _advance_head(self, instance: str) -> Op[bool]:
        """The head left the active set: point the instance at its next active submission
        (True: it has one, which may now run).

        With row locks the instance row is locked first, in a statement of its own: an
        admission in flight holds it, and only a statement started after that admission
        commits sees the new submission (READ COMMITTED snapshots are per statement).
        Advancing in one UPDATE would wait for the lock but compute the next head from the
        older snapshot, miss the admission, and let a later one overtake it."""
        d = self._d
        if d.row_locks:
            yield Stmt(d.sql("SELECT 1 FROM {p}flue_instances WHERE instance = ?{lock}"), (instance,))
        row = yield Stmt(d.sql(
            "UPDATE {p}flue_instances SET (head_seq, head_ms) = (SELECT seq, accepted_ms FROM {p}flue_submissions "
            "WHERE instance = ? AND status IN ('queued', 'running') ORDER BY seq LIMIT 1) WHERE instance = ? "
            "RETURNING head_seq"
        ), (instance, instance), "one")
        return row is not None and row[0] is not None

    def _record(self, sub: Submission, events: list[dict[str, Any]], *, new: bool = False) -> Op[int | None]:
        """Append lifecycle events to the instance's stream in the current transaction (``new``:
        the instance's first submission, whose stream most likely does not exist yet)."""
        return (yield from self._record_texts(sub, [dumps(e) for e in events], new=new))

    def _record_texts(self, sub: Submission, texts: list[str], *, new: bool = False) -> Op[int | None]:
        """Append encoded events to the instance's stream; its new length (None: it is closed)."""
        try:
            return (yield from append_rows(self._d, sub.instance, texts, create="first" if new else True))
        except StreamClosed:
            return None  # a closed stream takes no more events; the state change still stands

    # -- the contract ----------------------------------------------------------------

    async def admit(
        self, instance: str, input: Any, *, kind: SubmissionKind = "prompt", dispatch_id: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS, timeout_s: float = DEFAULT_TIMEOUT_S,
        max_queued: int | None = None, now: datetime | None = None,
    ) -> tuple[Submission, bool]:
        sub, created, _length = await self.admit_at(
            instance, input, kind=kind, dispatch_id=dispatch_id, max_attempts=max_attempts, timeout_s=timeout_s,
            max_queued=max_queued, now=now,
        )
        return sub, created

    async def admit_at(
        self, instance: str, input: Any, *, kind: SubmissionKind = "prompt", dispatch_id: str | None = None,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS, timeout_s: float = DEFAULT_TIMEOUT_S,
        max_queued: int | None = None, now: datetime | None = None, claim_for: tuple[str, float] | None = None,
    ) -> tuple[Submission, bool, int | None]:
        """``admit``, plus the length of the instance's stream before the admission's event
        (None when nothing was appended: a replay, or a closed stream). With ``claim_for``
        (owner, lease seconds), a new submission that is at once its instance's head is also
        claimed by that owner in the admission's transaction (``running``, attempt 1), and no
        coordinator is told of a runnable head."""
        plan = plan_admission(
            instance, input, kind=kind, dispatch_id=dispatch_id, max_attempts=max_attempts,
            timeout_s=timeout_s, now=now, max_queued=max_queued,
        )
        try:
            sub, created, length = await self._db.run(self._admit(plan, claim_for), Mode.TRANSACTION)
        except Replayed:
            existing = await self._db.run(self._one("dispatch_id = ?", (plan.dispatch_id,)), Mode.READ)
            assert existing is not None
            check_replay(existing, plan)
            sub, created, length = existing, False, None
        if created:
            self._appended(instance, queued=sub.status == "queued")  # a claimed one runs already
        return sub, created, length

    def _admit(
        self, plan: Admission, claim_for: tuple[str, float] | None = None
    ) -> Op[tuple[Submission, bool, int | None]]:
        d = self._d
        if plan.dispatch_id is not None:
            existing = yield from self._one("dispatch_id = ?", (plan.dispatch_id,))
            if existing is not None:
                check_replay(existing, plan)
                return existing, False, None
        seq, head = yield Stmt(d.sql(_BUMP), (plan.instance, plan.accepted_ms), "one")
        # every seq from the head on is unsettled (only heads settle) and the instance row is
        # held: the bound is exact; raising rolls the whole transaction back
        plan.check_bound(seq - head + 1)
        claimed = claim_for is not None and seq == head  # nothing before it: it may run at once
        status, attempts, owner, expires = "queued", 0, None, None
        if claim_for is not None and claimed:
            status, attempts, owner, expires = "running", 1, claim_for[0], plan.accepted_ms + int(claim_for[1] * 1000)
        inserted = yield Stmt(d.sql(_INSERT), (
            plan.submission_id, plan.instance, seq, plan.kind, plan.dispatch_id, d.json(plan.input_json),
            plan.input_hash, status, attempts, plan.max_attempts, plan.accepted_ms, plan.deadline_ms, owner, expires,
        ), "one")
        if inserted is None:
            raise Replayed  # roll back the seq bump; the caller reads the winner
        if not claimed:
            yield Notify("q", plan.instance)
        sub = self._decode(inserted)
        length = yield from self._record(sub, [admission_event(sub)], new=seq == 1)
        return sub, True, None if length is None else length - 1

    async def count_unsettled(self) -> int:
        row = await self._db.run(single(self._d.sql(_UNSETTLED), (), "one"), Mode.READ)
        return int(row[0])

    def _claim(
        self, owner: str, lease_ms: int, now: int, extra: str, params: tuple[Any, ...]
    ) -> Op[tuple[Submission, bool] | None]:
        """Claim the oldest runnable head (matching ``extra``) for ``owner``, or settle it failed if
        exhausted; with whether its instance then has a next head."""
        d = self._d
        row = yield Stmt(d.sql(_HEADS + extra + _OLDEST), (now, *params), "one")
        if row is None:
            return None
        head = self._decode(row)
        error = exhaustion_error(attempts=head.attempts, max_attempts=head.max_attempts,
                                 deadline_ms=iso_to_ms(head.deadline_at), now=now)
        if error is not None:
            row = yield Stmt(d.sql(
                "UPDATE {p}flue_submissions SET status = 'failed', error = ?, settled_ms = ?, lease_owner = ?, "
                f"lease_expires_ms = NULL WHERE submission_id = ? RETURNING {_COLS}"
            ), (d.json(dumps(error)), now, owner, head.submission_id), "one")
        else:
            row = yield Stmt(d.sql(
                "UPDATE {p}flue_submissions SET status = 'running', attempts = attempts + 1, lease_owner = ?, "
                f"lease_expires_ms = ? WHERE submission_id = ? RETURNING {_COLS}"
            ), (owner, now + lease_ms, head.submission_id), "one")
        sub = self._decode(row)
        if error is not None:
            next_head = yield from self._advance_head(sub.instance)
            yield from self._record(sub, settlement_events(sub))
            if next_head:
                yield Notify("q", sub.instance)  # the instance's next head became runnable
            return sub, next_head
        return sub, False

    async def _claimed(self, op: Op[tuple[Submission, bool] | None]) -> Submission | None:
        claimed = await self._db.run(op, Mode.TRANSACTION)
        if claimed is None:
            return None
        sub, next_head = claimed
        if sub.status == "failed":
            self._appended(sub.instance, queued=next_head)
        return sub

    async def claim_next(
        self, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        t = now_ms(now)
        if not self._found:  # most claims after one that found nothing find nothing: look without the write lock
            probe = single(self._d.sql(_ANY_RUNNABLE), (t,), "one")
            if await self._db.run(probe, Mode.READ) is None:
                return None
        sub = await self._claimed(self._claim(owner, int(lease_s * 1000), t, "", ()))
        self._found = sub is not None
        return sub

    async def claim(
        self, submission_id: str, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        op = self._claim(owner, int(lease_s * 1000), now_ms(now), " AND s.submission_id = ?", (submission_id,))
        return await self._claimed(op)

    async def renew(
        self, owner: str, submission_ids: list[str], *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> list[str]:
        ids = list(dict.fromkeys(submission_ids))
        if not ids:
            return []
        marks = ", ".join("?" for _ in ids)
        sql = self._d.spell(  # not memoized: the statement varies with the number of ids
            f"UPDATE {{p}}flue_submissions SET lease_expires_ms = ? WHERE submission_id IN ({marks}) "
            "AND status = 'running' AND lease_owner = ? RETURNING submission_id"
        )
        rows = await self._db.run(single(sql, (now_ms(now) + int(lease_s * 1000), *ids, owner), "all"), Mode.WRITE)
        renewed = {r[0] for r in rows}
        return [i for i in ids if i in renewed]

    async def settle(
        self, submission_id: str, owner: str, *, status: SettledStatus, result: Any = None,
        error: dict[str, Any] | None = None, attempt: int | None = None, now: datetime | None = None,
        event_index: int | None = None,
    ) -> bool:
        ok, _settled = await self.settle_with(
            submission_id, owner, status=status, result=result, error=error, attempt=attempt, now=now,
            event_index=event_index,
        )
        return ok

    async def settle_with(
        self, submission_id: str, owner: str, *, status: SettledStatus, result: Any = None,
        error: dict[str, Any] | None = None, attempt: int | None = None, now: datetime | None = None,
        event_index: int | None = None, events: list[dict[str, Any]] | None = None,
    ) -> tuple[bool, Submission | None]:
        """``settle``, and in its transaction ``events`` (the attempt's last ones) go to the instance's
        stream before the settlement event; returns settle's answer and the submission as this call
        settled it (None when it did not)."""
        check_settle_status(status)
        d = self._d
        result_doc, error_doc = d.json(dumps(result)), None if error is None else d.json(dumps(error))
        t = now_ms(now)
        texts = [dumps(e) for e in events or ()]

        fenced, params = ("", ()) if attempt is None else (" AND attempts = ?", (attempt,))

        def op() -> Op[tuple[bool, Submission | None, bool]]:
            # the running submission of this owner (and attempt) settles; anything else is read below
            row = yield Stmt(d.sql(
                "UPDATE {p}flue_submissions SET status = ?, result = ?, error = ?, settled_ms = ?, "
                "lease_expires_ms = NULL WHERE submission_id = ? AND status = 'running' AND lease_owner = ?"
                f"{fenced} RETURNING {_COLS}"
            ), (status, result_doc, error_doc, t, submission_id, owner, *params), "one")
            if row is None:
                row = yield Stmt(d.sql(
                    "SELECT status, lease_owner, attempts FROM {p}flue_submissions WHERE submission_id = ?"
                ), (submission_id,), "one")
                if row is None or row[1] != owner or (attempt is not None and row[2] != attempt):
                    return False, None, False  # not this owner's (or attempt's): fenced off
                return row[0] == status, None, False  # a replayed settle by the same owner
            settled = self._decode(row)
            next_head = yield from self._advance_head(settled.instance)
            lifecycle = [dumps(e) for e in settlement_events(settled, event_index=event_index)]
            yield from self._record_texts(settled, texts + lifecycle)
            if next_head:  # only then is anything runnable that was not before
                yield Notify("q", settled.instance)
            return True, settled, next_head

        ok, settled, next_head = await self._db.run(op(), Mode.TRANSACTION)
        if settled is not None:
            self._appended(settled.instance, queued=next_head)
        return ok, settled

    async def get(self, submission_id: str) -> Submission | None:
        return await self._db.run(self._one("submission_id = ?", (submission_id,)), Mode.READ)

    async def get_by_dispatch_id(self, dispatch_id: str) -> Submission | None:
        return await self._db.run(self._one("dispatch_id = ?", (dispatch_id,)), Mode.READ)

    async def list_for_instance(self, instance: str) -> list[Submission]:
        sql = self._d.sql(f"SELECT {_COLS} FROM {{p}}flue_submissions WHERE instance = ? ORDER BY seq")
        return [self._decode(r) for r in await self._db.run(single(sql, (instance,), "all"), Mode.READ)]

    @property
    def database(self) -> Database:
        """The database this store's operations run on (stores on the same one may share a transaction)."""
        return self._db

    async def append_journal(self, submission_id: str, attempt: int, entry: dict[str, Any]) -> bool:
        return await self._db.run(self.journal_step(submission_id, attempt, entry), Mode.TRANSACTION)

    def journal_step(self, submission_id: str, attempt: int, entry: dict[str, Any]) -> Op[bool]:
        """``append_journal``'s operation, for a transaction of another store on :attr:`database`
        (``SQLSessionStore.save_checked(first=...)``: a prompt's last entry and its session go together)."""
        if not isinstance(entry, dict):
            raise TypeError("journal entries must be JSON objects (dicts)")
        d = self._d
        doc = d.json(dumps(entry))
        column, stamp = d.timestamp("recorded")
        t = now_ms()

        def op() -> Op[bool]:
            # Locking the submission row fences off takeovers and serializes appenders.
            row = yield Stmt(d.sql(
                "SELECT 1 FROM {p}flue_submissions WHERE submission_id = ? AND status = 'running' AND attempts = ?{lock}"
            ), (submission_id, attempt), "one")
            if row is None:
                return False
            yield Stmt(d.sql(
                f"INSERT INTO {{p}}flue_journal (submission_id, seq, attempt, entry, {column}) VALUES (?, "
                f"(SELECT COALESCE(MAX(seq), 0) + 1 FROM {{p}}flue_journal WHERE submission_id = ?), ?, ?, {stamp})"
            ), (submission_id, submission_id, attempt, doc, t))
            return True

        return op()

    async def journal(self, submission_id: str) -> list[dict[str, Any]]:
        sql = self._d.sql("SELECT entry FROM {p}flue_journal WHERE submission_id = ? ORDER BY seq")

        def op() -> Op[list[dict[str, Any]]]:
            return [self._d.loads(r[0]) for r in (yield Stmt(sql, (submission_id,), "all"))]

        return await self._db.run(op(), Mode.READ)

    async def expire_leases(self, owner_prefix: str, *, keep: str, now: datetime | None = None) -> list[str]:
        """End at once the leases of running submissions whose owner starts with ``owner_prefix``,
        except ``keep``'s: a restarted replica's previous process is known dead
        (:mod:`flue.runtime.replica`), so its work is claimable now. Returns their ids."""
        t = now_ms(now)
        d = self._d

        def op() -> Op[list[tuple[str, str]]]:
            rows = yield Stmt(d.sql(
                "UPDATE {p}flue_submissions SET lease_expires_ms = ? WHERE status = 'running' "
                "AND substr(lease_owner, 1, ?) = ? AND lease_owner <> ? AND lease_expires_ms >= ? "
                "RETURNING submission_id, instance"
            ), (t - 1, len(owner_prefix), owner_prefix, keep, t), "all")
            for instance in dict.fromkeys(r[1] for r in rows):
                yield Notify("q", instance)  # every process's coordinator: claim them now
            return [(sid, instance) for sid, instance in rows]

        rows = await self._db.run(op(), Mode.TRANSACTION)
        for instance in dict.fromkeys(instance for _, instance in rows):
            self._listeners.notify(QUEUE_KEY, instance)  # coordinators here: claim them now
        return [sid for sid, _ in rows]

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        self._changes.ensure_started("q")
        return self._listeners.add(QUEUE_KEY, listener)

