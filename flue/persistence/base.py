"""The persistence adapter contract (public).

An adapter holds Flue's runtime state: session histories, agent submissions
(admission, claims, leases, journals), workflow run records and event streams.
Adapters come from the ``flue_persistence`` hook; ``flue.yaml`` ``persistence:``
selects one. The built-in adapter is SQLite (``flue.persistence.sqlite``).

Lifecycle at startup: ``await adapter.migrate()`` (optional: create the schema
idempotently and stamp :data:`SCHEMA_VERSION`), then ``stores = await
adapter.connect()``; at shutdown ``await adapter.close()`` (optional). A store
stamped with a version this code does not know must refuse to start with
:class:`SchemaVersionError`.

Offsets follow the Durable Streams format ``<readSeq>_<seq>`` (two 16-digit
zero-padded numbers; Flue uses readSeq 0) plus the sentinel ``-1`` meaning
"before the first event". :func:`format_offset` / :func:`parse_offset` convert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel, to_snake

from flue.errors import FlueError
from flue.strict_json import query_int

if TYPE_CHECKING:
    from flue.persistence.submissions import SubmissionStore

SCHEMA_VERSION = 1
OFFSET_BEFORE_START = "-1"
_PAD = 16


class SchemaVersionError(RuntimeError):
    """The store was written by a newer or unknown version of Flue."""


class StreamNotFound(FlueError, KeyError):
    """Appending to or closing a stream that does not exist."""

    error_type = "stream_not_found"
    http_status = 404


class StreamClosed(RuntimeError):
    """Appending to a closed stream."""


def format_offset(seq: int) -> str:
    """Offset *after* ``seq`` events (seq 0 = before the first event)."""
    return f"{0:0{_PAD}d}_{seq:0{_PAD}d}"


def parse_offset(offset: str) -> int:
    """Return the number of events before this offset. Raises ValueError on bad input."""
    if offset == OFFSET_BEFORE_START:
        return 0
    read_seq, sep, seq = offset.partition("_")
    # ASCII digits within 64 bits (str.isdigit would take "²" and other scripts' digits)
    position = query_int(seq) if sep else None
    if position is None or query_int(read_seq) is None:
        raise ValueError(f"invalid offset {offset[:60]!r}")
    return position


class Camel(BaseModel):
    """A model whose wire names are camelCase; both names read a field (``record.run_id`` and
    ``record.runId``), so code can use the names it sees in JSON and docs."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    if not TYPE_CHECKING:  # type checkers see the snake_case fields only

        def __getattr__(self, name: str) -> Any:
            snake = to_snake(name)
            if snake != name and snake in type(self).model_fields:
                return getattr(self, snake)
            return super().__getattr__(name)


# -- sessions -----------------------------------------------------------------


class SessionData(Camel):
    """Everything a session needs to continue: its message history and metadata.

    ``messages`` are OpenAI-style chat messages (role/content/tool_calls/...)
    as plain JSON; ``metadata`` holds usage totals and compaction state.
    """

    messages: list[dict[str, Any]] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


@runtime_checkable
class SessionStore(Protocol):
    """Keyed by a storage key such as ``agents/<name>/<id>/<harness>/<session>``."""

    async def save(self, key: str, data: SessionData) -> None: ...
    async def load(self, key: str) -> SessionData | None: ...
    async def delete(self, key: str) -> None: ...


# -- workflow runs ------------------------------------------------------------

RunStatus = Literal["active", "completed", "errored"]


class RunRecord(Camel):
    """One workflow run. :meth:`view` is Flue's ``RunRecord`` on the wire."""

    run_id: str
    workflow_name: str
    status: RunStatus = "active"
    payload: Any = None
    result: Any = None
    error: dict[str, Any] | None = None
    started_at: str
    ended_at: str | None = None
    duration_ms: float | None = None

    def view(self) -> dict[str, Any]:
        """``{runId, workflowName, status, startedAt, payload, input, endedAt?, isError?,
        durationMs?, result?, error?}`` (``input`` is beta.5's name for the payload)."""
        out: dict[str, Any] = {"runId": self.run_id, "workflowName": self.workflow_name, "status": self.status,
                               "startedAt": self.started_at, "payload": self.payload, "input": self.payload}
        if self.status != "active":
            out.update(endedAt=self.ended_at, isError=self.status == "errored", durationMs=self.duration_ms)
            out["result" if self.status == "completed" else "error"] = (
                self.result if self.status == "completed" else self.error
            )
        return out

    def pointer(self) -> dict[str, Any]:
        """Flue's ``RunPointer``: the view without ``payload``, ``result`` and ``error``."""
        return {k: v for k, v in self.view().items() if k not in ("payload", "input", "result", "error")}


@runtime_checkable
class RunStore(Protocol):
    """Run records, and who is running each active run.

    A run created with an ``owner`` holds a lease that the owner renews while the
    run executes (``renew_run``). When the owner dies the lease runs out, and
    ``claim_interrupted_run`` hands the run to exactly one caller (atomically,
    across processes sharing the store), which ends it (``run_resume`` then an
    errored ``run_end``, :mod:`flue.runtime.run_recovery`). A run created without
    an owner has no lease and is never claimed. Ending a run ends its lease.
    Clock-dependent methods take ``now`` so tests can move time by hand.

    Optional: ``expire_run_leases(owner_prefix, *, keep, now=None) -> list[str]`` ends at once
    the leases of active runs whose owner starts with ``owner_prefix``, except ``keep``'s, so
    ``claim_interrupted_run`` takes them now (a restarted server's dead previous process,
    :mod:`flue.runtime.replica`). The adapter's optional ``lock_replica(replica_id) -> bool``
    holds an identity until its process dies (False when a live process holds it).

    Optional, for a run store that shares a database with its adapter's stream store: two
    transactions per run instead of five. ``open_run(record, stream, *, owner=None,
    lease_s=30.0, now=None) -> RunRecord`` is ``create_run`` plus ``create_stream(stream)``;
    ``close_run(run_id, stream, events, *, status, result=None, error=None, ended_at,
    duration_ms)`` appends ``events`` to ``stream``, closes it and ends the run (when the
    stream is already closed, only ``end_run``'s no-op-if-ended update runs).
    """

    async def create_run(
        self, record: RunRecord, *, owner: str | None = None, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord:
        """Persist a new active run (owned by ``owner`` for ``lease_s`` seconds when given);
        first writer wins on a duplicate run id."""
        ...

    async def renew_run(self, run_id: str, owner: str, *, lease_s: float = 30.0, now: datetime | None = None) -> bool:
        """Extend the lease of an active run ``owner`` holds; False when it no longer holds it
        (another caller claimed it, or it ended)."""
        ...

    async def claim_interrupted_run(
        self, owner: str, *, lease_s: float = 30.0, now: datetime | None = None
    ) -> RunRecord | None:
        """Take one active run whose lease has expired (its owner died): ``owner`` holds it for
        ``lease_s`` seconds from now. None when there is none. Two concurrent callers never get
        the same run."""
        ...

    async def end_run(
        self, run_id: str, *, status: RunStatus, result: Any = None, error: dict[str, Any] | None = None,
        ended_at: str, duration_ms: float,
    ) -> None:
        """Finalize a run. No-op when the run is unknown."""
        ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def list_runs(
        self, *, workflow_name: str | None = None, status: RunStatus | None = None, limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """Newest first; returns (records, next cursor or None)."""
        ...


# -- event streams ------------------------------------------------------------


class StreamMeta(Camel):
    path: str
    next_offset: str
    length: int
    closed: bool = False
    created_at: str


class ReadResult(Camel):
    events: list[dict[str, Any]]
    next_offset: str
    up_to_date: bool
    closed: bool


StreamListener = Callable[[str], None]


@runtime_checkable
class EventStreamStore(Protocol):
    """Append-only JSON event streams at paths like ``runs/<runId>`` or ``agents/<name>/<id>``.

    Optional attribute ``live_poll_interval: float | None``: how often live readers must re-read
    to see appends ``subscribe`` does not report (other processes'); ``None`` when it reports
    every append, whichever process made it. Absent: readers re-read every 0.25 s
    (:func:`flue.server.streams.live_poll_interval`).
    """

    async def create_stream(self, path: str) -> StreamMeta:
        """Idempotent."""
        ...

    async def append_events(self, path: str, events: list[dict[str, Any]]) -> str:
        """Append in order and return the new next offset. Raises StreamNotFound / StreamClosed."""
        ...

    async def read_events(self, path: str, offset: str = OFFSET_BEFORE_START, limit: int | None = None) -> ReadResult:
        """Events strictly after ``offset``. A missing stream reads as empty and up to date."""
        ...

    async def close_stream(self, path: str) -> None: ...

    async def get_stream_meta(self, path: str) -> StreamMeta | None: ...

    def subscribe(self, path: str, listener: StreamListener) -> Callable[[], None]:
        """Call ``listener(path)`` after appends to or closure of ``path`` made through this store
        instance (and, where the store can, through other processes: ``live_poll_interval``).
        Returns an unsubscribe function."""
        ...


# -- sandbox snapshots ----------------------------------------------------------


@runtime_checkable
class SnapshotStore(Protocol):
    """Opaque blobs keyed by agent-instance scope (e.g. ``agents/<name>/<id>``).

    The runtime saves a virtual sandbox's filesystem here so it survives
    restarts. ``save_snapshot`` replaces the previous blob for the scope.
    """

    async def save_snapshot(self, scope: str, data: bytes) -> None: ...
    async def load_snapshot(self, scope: str) -> bytes | None: ...
    async def delete_snapshot(self, scope: str) -> None: ...


# -- the adapter --------------------------------------------------------------


class PersistenceStores(Protocol):
    # read-only members, so that an adapter's stores may be its own (narrower) classes
    @property
    def sessions(self) -> SessionStore: ...
    @property
    def runs(self) -> RunStore: ...
    @property
    def streams(self) -> EventStreamStore: ...
    @property
    def submissions(self) -> SubmissionStore: ...  # contract and invariants: flue.persistence.submissions
    @property
    def snapshots(self) -> SnapshotStore: ...


@runtime_checkable
class PersistenceAdapter(Protocol):
    async def connect(self) -> PersistenceStores: ...
