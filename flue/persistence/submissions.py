"""Durable agent submissions: the store contract (public).

A **submission** is one admitted input to an agent instance: a direct prompt
(``kind="prompt"``) or a ``dispatch(...)`` (``kind="dispatch"``). The store
keeps them so accepted work survives restarts and so several coordinators
(threads, processes, replicas sharing a database) can share the work safely.
A coordinator -- the runtime component that runs submissions -- polls
:meth:`SubmissionStore.claim_next`, runs what it gets while renewing its
lease, records progress in the journal, and settles the submission.

Invariants every adapter must keep (``flue.testing.persistence_contract``
checks them):

**Admission.** ``admit`` assigns each submission an ``seq`` that orders it
within its instance (``agents/<name>/<id>``) in admission order; admissions
to one instance are serialized so that order is the commit order. Input is
JSON, snapshotted at admission, and hashed (:func:`flue.persistence.kit.input_hash`).
Dispatch admission is idempotent by ``dispatch_id`` across the whole store:
the same id with the same instance and input returns the original
submission (``created=False``, same ``accepted_at``, same receipt); the same
id with a different instance or input raises :class:`DispatchConflictError`.

**Ordering and claims.** Per instance, submissions run one at a time in
``seq`` order. The *head* of an instance is its lowest-``seq`` submission
that is ``queued`` or ``running``. Only a head is ever claimed: when it is
``queued``, or ``running`` with an expired lease (its coordinator died).
Claiming is atomic: two coordinators racing for one head can never both
succeed (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: ``FOR UPDATE SKIP LOCKED``).
Each claim increments ``attempts`` and sets ``lease_owner`` /
``lease_expires_at`` (default lease :data:`LEASE_S` = 30 s).

**Exhaustion.** A head whose ``deadline_at`` has passed (``accepted_at`` +
``timeout_s``, default 1 h) or whose ``attempts`` already reached
``max_attempts`` (default 10) is not claimed: the claim settles it ``failed``
with ``error = {"type": "deadline_exceeded" | "attempts_exhausted",
"message": ...}`` and returns it with ``status == "failed"``, so the caller can
emit the error event and poll again. A ``running`` submission whose lease is
still live is left alone even past its deadline: its coordinator enforces the
deadline while it works.

**Bounds.** ``admit(..., max_queued=N)`` refuses a new submission with
:class:`QueueFull` (nothing is admitted, nothing appended) when the
instance would then hold more than ``N`` unsettled (queued or running)
submissions; the check and the admission are one atomic step, so concurrent
admissions cannot overshoot. A replay of an admitted dispatch id is returned
as usual, full or not. ``count_unsettled()`` is the number of unsettled
submissions in the whole store (callers bound a process's backlog with it).

**Leases.** ``renew`` extends the lease of running submissions the caller
owns and returns the ids it renewed; an id missing from the answer means the
caller lost the submission (another coordinator took it over, or it was
settled) and must stop working on it.

**Settlement.** Only the current lease owner may ``settle`` a running
submission (``completed`` or ``failed``); settling again with the same owner
and status returns ``True`` without changing anything, anyone else gets
``False``. With ``attempt`` (the fencing token the journal uses) only that
attempt may settle: a coordinator whose lease expired and was taken over --
even by a later claim of its own -- gets ``False``. Settling advances the
instance's head.

**Journal.** ``append_journal(submission_id, attempt, entry)`` records one
completed step (a finished turn, a finished tool call with its output) so a
recovering attempt can resume after it. ``attempt`` is a fencing token: the
entry is accepted only while the submission is ``running`` with exactly that
attempt number, so a coordinator that lost its lease cannot write into its
successor's journal. ``journal`` returns every accepted entry in order.

**Lifecycle events.** The instance's event stream (path = the instance,
created if missing) records each submission's admission and settlement in
the same transaction as the state change, so the stream holds exactly one
``submission_admitted`` and at most one ``submission_settled`` per
submission, whatever crashes in between: a created admission appends
:func:`admission_event`; a settlement (by ``settle``, or a claim that
exhausts a head) appends :func:`settlement_events` (Flue's
``submission_settled``: ``outcome``, and ``result`` or ``error``).
Replays append nothing.

**Notification.** ``subscribe(listener)`` calls ``listener(instance)``
after an admission to, or a settlement in, that instance made through this
store object (in-process wake-ups; other processes poll ``claim_next``).

**Fast recovery (optional).** ``expire_leases(owner_prefix, *, keep, now=None)
-> list[str]`` ends at once the leases of ``running`` submissions whose
``lease_owner`` starts with ``owner_prefix``, except ``keep``'s, and returns
their ids (a restarted server's dead previous process:
:mod:`flue.runtime.replica`); ``claim_next`` then takes them as it takes any
expired lease. Without it a restart waits for the leases to run out.

Times are ISO-8601 UTC strings with millisecond precision; every
clock-dependent method takes ``now: datetime | None`` so tests can control
time. Coordinators on different hosts should have roughly synchronized
clocks (skew well below the lease duration).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from flue.errors import FlueError
from flue.ids import new_id
from flue.persistence.base import Camel
from flue.persistence.kit import dumps, input_hash, ms_to_iso, now_ms

SubmissionKind = Literal["prompt", "dispatch"]
SubmissionStatus = Literal["queued", "running", "completed", "failed"]
SettledStatus = Literal["completed", "failed"]

DEFAULT_MAX_ATTEMPTS = 10
DEFAULT_TIMEOUT_S = 3600.0
LEASE_S = 30.0

# Flue's wire types for the two ways a submission runs out of chances.
ERROR_DEADLINE_EXCEEDED = "submission_timeout"
ERROR_ATTEMPTS_EXHAUSTED = "submission_retry_exhausted"


class DispatchReceipt(Camel):
    """What ``dispatch(...)`` returns: proof of admission, not of completion."""

    dispatch_id: str
    accepted_at: str


class Submission(Camel):
    submission_id: str
    instance: str
    kind: SubmissionKind
    dispatch_id: str | None = None
    input: Any = None
    input_hash: str
    status: SubmissionStatus
    seq: int
    attempts: int = 0
    max_attempts: int
    accepted_at: str
    deadline_at: str
    lease_owner: str | None = None
    lease_expires_at: str | None = None
    settled_at: str | None = None
    result: Any = None
    error: dict[str, Any] | None = None

    @property
    def settled(self) -> bool:
        return self.status in ("completed", "failed")

    def seconds_left(self, now: datetime | None = None) -> float:
        """Seconds until ``deadline_at`` (0 when it has passed)."""
        from flue.persistence.kit import iso_to_ms

        return max(0.0, (iso_to_ms(self.deadline_at) - now_ms(now)) / 1000)

    def receipt(self) -> DispatchReceipt:
        if self.dispatch_id is None:
            raise ValueError(f"submission {self.submission_id} is a {self.kind}, not a dispatch")
        return DispatchReceipt(dispatch_id=self.dispatch_id, accepted_at=self.accepted_at)


class QueueFull(RuntimeError):
    """Admission refused: the instance already holds ``limit`` unsettled submissions."""

    def __init__(self, instance: str, limit: int) -> None:
        self.instance = instance
        self.limit = limit
        super().__init__(f"{instance} already holds {limit} unsettled submissions; retry once some have settled")


class DispatchConflictError(FlueError, ValueError):
    """A dispatch id was reused for a different instance or input."""

    error_type = "dispatch_conflict"
    http_status = 409

    def __init__(self, dispatch_id: str, existing: Submission) -> None:
        self.dispatch_id = dispatch_id
        self.existing = existing
        super().__init__(
            f"dispatch id {dispatch_id!r} was already admitted with different input "
            f"(to {existing.instance} at {existing.accepted_at}); use a new dispatch id for new input"
        )


@runtime_checkable
class SubmissionStore(Protocol):
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
        """Queue ``input`` for ``instance``; return (submission, created).

        ``kind="dispatch"`` without a ``dispatch_id`` gets a generated one.
        Raises DispatchConflictError on a reused dispatch id with other input,
        QueueFull when ``max_queued`` would be exceeded, ValueError/TypeError on
        invalid arguments or non-JSON input.
        """
        ...

    async def count_unsettled(self) -> int:
        """Queued and running submissions in the whole store (cheap: no backlog scan)."""
        ...

    async def claim_next(
        self, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        """Claim the runnable head of any instance, or None when there is nothing to do.

        ``status == "running"``: the caller now holds the lease. ``status ==
        "failed"``: the head was exhausted and has just been settled; emit its
        error and call again.
        """
        ...

    async def claim(
        self, submission_id: str, owner: str, *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> Submission | None:
        """Like ``claim_next`` for one submission; None unless it is its instance's runnable head."""
        ...

    async def renew(
        self, owner: str, submission_ids: list[str], *, lease_s: float = LEASE_S, now: datetime | None = None
    ) -> list[str]:
        """Extend leases of running submissions owned by ``owner``; return the ids renewed."""
        ...

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
        """Finish a running submission held by ``owner`` (and, if given, ``attempt``).
        Idempotent for that owner, attempt and status. ``event_index`` is the ``eventIndex``
        of the ``submission_settled`` event appended (the attempt's next one)."""
        ...

    async def get(self, submission_id: str) -> Submission | None: ...

    async def get_by_dispatch_id(self, dispatch_id: str) -> Submission | None: ...

    async def list_for_instance(self, instance: str) -> list[Submission]:
        """Every submission of the instance, in admission order."""
        ...

    async def append_journal(self, submission_id: str, attempt: int, entry: dict[str, Any]) -> bool:
        """Record a completed step; False when ``attempt`` no longer holds the submission."""
        ...

    async def journal(self, submission_id: str) -> list[dict[str, Any]]: ...

    def subscribe(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Call ``listener(instance)`` when a head may have become runnable: after an admission
        that queued, and after a settlement (or a claim that failed an exhausted head) that left
        the instance a next head. A store may call it more often; it need not call it for a
        settlement that leaves the instance nothing queued. Returns an unsubscribe function."""
        ...


# -- helpers shared by adapters ------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """A validated admission, ready to insert (computed before any transaction)."""

    submission_id: str
    instance: str
    kind: SubmissionKind
    dispatch_id: str | None
    input: Any
    input_json: str
    input_hash: str
    max_attempts: int
    accepted_ms: int
    deadline_ms: int
    max_queued: int | None = None

    def check_bound(self, unsettled: int) -> None:
        """Raise QueueFull when ``unsettled`` (the instance's count with this admission) is over the bound."""
        if self.max_queued is not None and unsettled > self.max_queued:
            raise QueueFull(self.instance, self.max_queued)


def plan_admission(
    instance: str,
    input: Any,
    *,
    kind: str,
    dispatch_id: str | None,
    max_attempts: int,
    timeout_s: float,
    now: datetime | None,
    max_queued: int | None = None,
) -> Admission:
    if not isinstance(instance, str) or not instance.strip("/"):
        raise ValueError(f"instance must be a non-empty path such as agents/<name>/<id>, not {instance!r}")
    if kind not in ("prompt", "dispatch"):
        raise ValueError(f"kind must be 'prompt' or 'dispatch', not {kind!r}")
    if kind == "prompt" and dispatch_id is not None:
        raise ValueError("dispatch_id is only for kind='dispatch'")
    if dispatch_id is not None and (not isinstance(dispatch_id, str) or not dispatch_id):
        raise ValueError("dispatch_id must be a non-empty string")
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ValueError(f"max_attempts must be a positive integer, not {max_attempts!r}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
    if max_queued is not None and (isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1):
        raise ValueError(f"max_queued must be a positive integer or None, not {max_queued!r}")
    text = dumps(input)  # TypeError/ValueError for values JSON cannot hold
    accepted = now_ms(now)
    return Admission(
        submission_id=new_id("sub"),
        instance=instance,
        kind=kind,  # type: ignore[arg-type]
        dispatch_id=(dispatch_id or new_id("dsp")) if kind == "dispatch" else None,
        input=input,
        input_json=text,
        input_hash=input_hash(input),
        max_attempts=max_attempts,
        accepted_ms=accepted,
        deadline_ms=accepted + int(timeout_s * 1000),
        max_queued=max_queued,
    )


def check_replay(existing: Submission, plan: Admission) -> None:
    """Raise DispatchConflictError unless ``plan`` replays ``existing`` exactly."""
    if existing.instance != plan.instance or existing.kind != plan.kind or existing.input_hash != plan.input_hash:
        raise DispatchConflictError(plan.dispatch_id or "", existing)


def exhaustion_error(*, attempts: int, max_attempts: int, deadline_ms: int, now: int) -> dict[str, Any] | None:
    """The error that fails a head instead of claiming it, or None when it may run."""
    if now >= deadline_ms:
        return {
            "name": "SubmissionTimeoutError",
            "type": ERROR_DEADLINE_EXCEEDED,
            "message": f"submission deadline passed at {ms_to_iso(deadline_ms)} before it could finish",
        }
    if attempts >= max_attempts:
        return {
            "name": "SubmissionRetryExhaustedError",
            "type": ERROR_ATTEMPTS_EXHAUSTED,
            "message": f"submission was attempted {attempts} times (max_attempts {max_attempts}) without finishing",
        }
    return None


def _instance_ids(sub: Submission) -> dict[str, Any]:
    parts = sub.instance.split("/", 2)
    ids: dict[str, Any] = {"submission_id": sub.submission_id, "dispatch_id": sub.dispatch_id}
    if len(parts) == 3 and parts[0] == "agents":
        ids.update(agent_name=parts[1], instance_id=parts[2])
    return ids


def admission_event(sub: Submission) -> dict[str, Any]:
    """The ``submission_admitted`` event (wire JSON, ``eventIndex`` 0) a created admission
    appends to its stream; image data in the input is redacted."""
    from flue.events import SubmissionAdmitted, redact_images

    return SubmissionAdmitted(input=redact_images(sub.input), event_index=0, **_instance_ids(sub)).wire()


def settlement_events(sub: Submission, *, event_index: int | None = None) -> list[dict[str, Any]]:
    """The events (wire JSON) a settlement appends: ``submission_settled`` with the outcome and
    the result (completed) or error (failed). ``event_index`` continues the numbering of the
    attempt that settled it; a head failed on claim (no attempt ran) gets 1."""
    from flue.events import SubmissionSettled

    outcome = "completed" if sub.status == "completed" else "failed"
    event = SubmissionSettled(
        outcome=outcome, result=sub.result if outcome == "completed" else None,
        error=sub.error if outcome == "failed" else None,
        event_index=1 if event_index is None else event_index, **_instance_ids(sub),
    )
    return [event.wire()]


def check_settle_status(status: str) -> None:
    if status not in ("completed", "failed"):
        raise ValueError(f"settle status must be 'completed' or 'failed', not {status!r}")


# Columns every SQL adapter stores; ``submission_from_row`` maps them back.
SUBMISSION_COLUMNS = (
    "submission_id", "instance", "seq", "kind", "dispatch_id", "input", "input_hash", "status", "attempts",
    "max_attempts", "accepted_ms", "deadline_ms", "lease_owner", "lease_expires_ms", "settled_ms", "result", "error",
)


def submission_from_row(row: Mapping[str, Any]) -> Submission:
    """Build a Submission from a row keyed by SUBMISSION_COLUMNS (JSON columns already decoded).
    The row is the store's own, written through this module: it is not validated again
    (``model_construct``; validating every row read was a measurable part of each prompt)."""

    def iso(ms: int | None) -> str | None:
        return None if ms is None else ms_to_iso(int(ms))

    return Submission.model_construct(
        submission_id=row["submission_id"],
        instance=row["instance"],
        seq=row["seq"],
        kind=row["kind"],
        dispatch_id=row["dispatch_id"],
        input=row["input"],
        input_hash=row["input_hash"],
        status=row["status"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        accepted_at=ms_to_iso(int(row["accepted_ms"])),
        deadline_at=ms_to_iso(int(row["deadline_ms"])),
        lease_owner=row["lease_owner"],
        lease_expires_at=iso(row["lease_expires_ms"]),
        settled_at=iso(row["settled_ms"]),
        result=row["result"],
        error=row["error"],
    )
