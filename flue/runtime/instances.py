"""Agent instances: durable submissions run one at a time per instance, in order.

Every prompt (HTTP, WebSocket, ``flue connect``) and every ``dispatch(...)`` is
*admitted* into the persistence adapter's submission store before anyone is
told it was accepted. A :class:`Coordinator` (one per runtime process) claims
runnable heads (:meth:`SubmissionStore.claim_next`, atomic across processes),
runs each in a fresh harness for ``agents/<name>/<id>`` whose session history
comes from the session store and whose virtual filesystem is restored from the
instance's last snapshot, renews its lease while it works, snapshots the
filesystem and settles the submission when done. Events go to the instance's
stream ``agents/<name>/<id>``: the store itself appends ``submission_admitted``
and ``submission_settled`` in the transactions that admit and settle, so each
appears exactly once per submission even across crashes.

A coordinator that dies leaves its submissions ``running`` with a lease that
expires after ``coordinator.lease`` seconds (default 30); any coordinator then
claims them again (attempts are bounded, and a deadline fails them).

Recovery is journaled (:class:`SubmissionJournal`): every model answer, tool
result and finished turn of the running prompt is recorded in the
submission's journal, the last turn's with the session's save (fenced by the
attempt number, so a coordinator that lost its lease cannot write into its
successor's), and the virtual
sandbox's snapshot is saved before each tool result and turn is recorded.
A recovering attempt restores that snapshot and replays the journal, so
completed turns and tool calls are not repeated. What may run twice after a
crash: the model call that was streaming and the tool calls that had started
but not finished when the process died (see :mod:`flue.harness.journal`).
A prompt that finished but whose settlement was lost is recognised by the
session's ``lastJournal`` marker (written with the history) and only
settled.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from flue import strict_json
from flue.errors import AgentNotFound, FlueError
from flue.errors import serialize_error as error_info
from flue.events import FlueEvent, SubmissionAdmitted, SubmissionSettled, redact_images
from flue.ids import new_id
from flue.models.overrides import remember_for, use_admitted
from flue.persistence.base import format_offset
from flue.persistence.submissions import ERROR_DEADLINE_EXCEEDED, LEASE_S, QueueFull, Submission
from flue.runtime.stream_writer import OPERATION_END, StreamWriter
from flue.stream_paths import instance_path, split_instance

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

#: Seconds the process-wide backlog count may be reused before the store is asked again.
BACKLOG_TTL_S = 0.5


class DeadlineExceeded(FlueError):
    """The submission ran past its deadline (``durability.timeout``) and was stopped."""

    error_type = ERROR_DEADLINE_EXCEEDED

    def __init__(self, deadline_at: str):
        super().__init__(f"submission deadline passed at {deadline_at} before it could finish")


class Backpressure(FlueError):
    """Admission refused because too much work is waiting; nothing was admitted.

    Over HTTP it renders with ``http_status`` and ``Retry-After: retry_after``
    (:func:`flue.server.errors.render_exception`), whichever route admitted."""

    http_status: ClassVar[int] = 503
    retry_after: ClassVar[int] = 2

    @property
    def details(self) -> str:
        return f"Retry after {self.retry_after} seconds; work already admitted is not affected."

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class InstanceQueueFull(Backpressure):
    """The agent instance already holds ``coordinator.max_queued_per_instance`` unsettled submissions."""

    error_type = "queue_full"
    http_status = 429
    retry_after = 1


class Overloaded(Backpressure):
    """The store already holds ``coordinator.max_queued`` unsettled submissions."""

    error_type = "overloaded"
    http_status = 503
    retry_after = 2


class LeaseLost(Exception):
    """This coordinator no longer holds the submission (another one took it over)."""


class SubmissionJournal:
    """The :class:`~flue.harness.journal.Journal` of one attempt of a submission.

    The entry of the turn that ends the prompt (``done``) is followed at once by the session's
    save, which marks the prompt finished (``lastJournal``). Where the session store can run the
    journal's step in its own transaction (the SQL core's stores on one database), the entry waits
    for that save (:meth:`save_session`): both are stored together or neither, fenced by the
    attempt like every entry, in one commit instead of two."""

    def __init__(
        self, runtime: Runtime, sub: Submission, entries: list[dict[str, Any]], env: Any, saved: bytes | None,
        *, session_key: str | None = None,
    ):
        self.key = sub.submission_id
        self.session_key = session_key  # the prompt's session: only its save takes the last entry
        self.entries = entries
        self._runtime = runtime
        self._sub = sub
        self._env = env
        self._snapshot = getattr(env, "snapshot", None)
        self.saved = saved  # the instance's snapshot as last stored
        self._pending: dict[str, Any] | None = None  # the last turn's entry, waiting for the session save
        stores = runtime.stores
        database = getattr(stores.submissions, "database", None)
        self._joins_save = (session_key is not None and database is not None
                            and hasattr(stores.submissions, "journal_step") and hasattr(stores.sessions, "save_checked")
                            and getattr(stores.sessions, "database", None) is database)

    async def save_snapshot(self) -> None:
        """Store the sandbox's state when it changed since it was last stored. An instance with no
        snapshot whose env is still as a fresh one (``pristine``) needs none: it would restore
        to what creating the env gives anyway."""
        if self._snapshot is None or (self.saved is None and getattr(self._env, "pristine", False)):
            return
        data = bytes(await self._snapshot())
        if data != self.saved:
            await self._runtime.stores.snapshots.save_snapshot(self._sub.instance, data)
            self.saved = data

    async def record(self, entry: dict[str, Any]) -> None:
        if entry.get("type") in ("tool", "turn"):
            await self.save_snapshot()  # the files must be at least as new as the results replayed
        if self._joins_save and entry.get("type") == "turn" and entry.get("done"):
            self._pending = entry  # the session save that follows takes it (save_session)
            return
        await self._append(entry)

    async def _append(self, entry: dict[str, Any]) -> None:
        if not await self._runtime.stores.submissions.append_journal(self._sub.submission_id, self._sub.attempts, entry):
            raise LeaseLost(self._sub.submission_id)

    def waits_for(self, key: str) -> bool:
        """Whether an entry waits for the save of session ``key`` (the prompt's own)."""
        return self._pending is not None and key == self.session_key

    async def save_session(self, key: str, other: str, make: Callable[[Any], Any]) -> None:
        """The session store's ``save_checked(key, other, make)`` with the waiting entry first, in
        its transaction; raises LeaseLost (nothing saved) when this attempt no longer holds the submission."""
        entry, self._pending = self._pending, None
        assert entry is not None
        stores = self._runtime.stores
        first = stores.submissions.journal_step(self._sub.submission_id, self._sub.attempts, entry)
        if not await stores.sessions.save_checked(key, other, make, first=first):
            raise LeaseLost(self._sub.submission_id)

    async def flush(self) -> None:
        """Store an entry no session save took (a prompt whose session is not persisted)."""
        entry, self._pending = self._pending, None
        if entry is not None:
            await self._append(entry)


def prompt_input(message: str, *, images: list[dict[str, Any]] | None = None, session: str = "default") -> dict[str, Any]:
    data: dict[str, Any] = {"message": message, "session": session}
    if images:
        data["images"] = images
    return data


def input_to_prompt(sub: Submission) -> tuple[str, list[dict[str, Any]] | None, str]:
    """(text, images, session) for a submission's input."""
    value = sub.input
    if sub.kind == "prompt" and isinstance(value, dict):
        return str(value.get("message", "")), value.get("images"), str(value.get("session") or "default")
    if isinstance(value, dict) and isinstance(value.get("message"), str):
        return value["message"], value.get("images"), str(value.get("session") or "default")
    if isinstance(value, str):
        return value, None, "default"
    return dispatch_signal(sub, value), None, "default"


def _xml_escape(text: str, *, quote: bool = False) -> str:
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace('"', "&quot;") if quote else text


def dispatch_signal(sub: Submission, value: Any) -> str:
    """Structured dispatch input as Flue's ``dispatch_input`` signal (reference 5.6): a tag with the
    delivery's identity and the input as key-sorted, 2-space JSON, escaped like Flue's signals."""
    agent, instance_id = split_instance(sub.instance)
    attrs = {"type": "dispatch_input", "agent": agent, "id": instance_id, "session": "default",
             "dispatchId": sub.dispatch_id or sub.submission_id, "acceptedAt": sub.accepted_at}
    head = " ".join(f'{k}="{_xml_escape(str(v), quote=True)}"' for k, v in attrs.items())
    body = _xml_escape(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False))
    return f"<dispatch {head}>\n{body}\n</dispatch>"


class Coordinator:
    """Claims and runs submissions for every agent instance of a runtime."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        owner: str | None = None,
        lease_s: float = LEASE_S,
        heartbeat_s: float | None = None,
        poll_interval: float = 0.5,
        max_concurrency: int = 64,
    ):
        self.runtime = runtime
        self.owner = owner or new_id("coord")
        self.lease_s = lease_s
        #: Seconds between lease renewals: short, so a long lease survives missed heartbeats.
        self.heartbeat_s = heartbeat_s if heartbeat_s is not None else lease_s / 6
        self.poll_interval = poll_interval
        self.max_concurrency = max_concurrency
        self._wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._reserved = 0  # places held by admissions that may claim what they admit
        self._settling: set[str] = set()  # running here, past their work: not renewed, never cancelled
        self._waiters: dict[str, list[asyncio.Future[Submission]]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._unsubscribe: Any = None
        # the store's unsettled count, read at most every BACKLOG_TTL_S and counted up locally between
        self._backlog = 0
        self._backlog_read_at = -math.inf
        self._backlog_lock = asyncio.Lock()

    @property
    def store(self) -> Any:
        return self.runtime.stores.submissions

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # the store calls listeners on the loop they subscribed from (flue.persistence.kit.Listeners)
        self._unsubscribe = self.store.subscribe(lambda _instance: self._wake.set())
        self._tasks = [
            loop.create_task(self._claim_loop(), name="flue-coordinator-claims"),
            loop.create_task(self._renew_loop(), name="flue-coordinator-leases"),
        ]

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop claiming; let running submissions finish for ``grace`` seconds, then
        cancel them. Cancelled submissions stay ``running`` in the store and are
        recovered by the next coordinator once their lease expires."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await asyncio.wait(list(self._running.values()), timeout=grace)
        for task in list(self._running.values()) + self._tasks:
            task.cancel()
        await asyncio.gather(*self._running.values(), *self._tasks, return_exceptions=True)
        if self._unsubscribe:
            self._unsubscribe()

    # -- admission -----------------------------------------------------------------------

    async def admit(
        self,
        agent: str,
        instance_id: str,
        input: Any,
        *,
        kind: str = "prompt",
        dispatch_id: str | None = None,
    ) -> tuple[Submission, bool]:
        sub, created, _before = await self._admit(agent, instance_id, input, kind=kind, dispatch_id=dispatch_id)
        return sub, created

    async def _admit(
        self, agent: str, instance_id: str, input: Any, *, kind: str = "prompt", dispatch_id: str | None = None,
        offset: bool = False,
    ) -> tuple[Submission, bool, int | None]:
        """Admit; with ``offset``, also the length of the instance's stream before the admission's
        event (None when unknown)."""
        definition = self.runtime.project.agents.get(agent)
        if definition is None:
            raise AgentNotFound(f"unknown agent '{agent}' (available: {', '.join(sorted(self.runtime.project.agents)) or 'none'})")
        durability = definition.durability
        options: dict[str, Any] = {}
        if durability is not None:
            options = {"max_attempts": durability.max_attempts, "timeout_s": durability.timeout}
        strict_json.check(input, what="the input")  # the boundary rules, for dispatch() from code too
        path = instance_path(agent, instance_id)
        bounds = self.runtime.project.config.coordinator
        if await self._over_backlog(bounds.max_queued, dispatch_id):
            raise Overloaded(
                f"the server already holds {bounds.max_queued} unsettled submissions (coordinator.max_queued); "
                "retry later"
            )
        # the store appends submission_admitted to the instance's stream in the admission's transaction
        admit_at = getattr(self.store, "admit_at", None)  # optional: admission and stream length at once
        before: int | None = None
        # with room here, a submission to an idle instance is claimed by its admission (one transaction
        # less, and no claim loop round); a queued one waits for the claim loop
        held = admit_at is not None and (bool(self._tasks) and not self._stopping  # started: a runtime that only admits runs nothing
                                         and len(self._running) + self._reserved < self.max_concurrency)
        self._reserved += held  # a place among max_concurrency, from the admission until its submission runs
        try:
            try:
                if admit_at is not None:
                    sub, created, before = await admit_at(
                        path, input, kind=kind, dispatch_id=dispatch_id, max_queued=bounds.max_queued_per_instance,
                        claim_for=(self.owner, self.lease_s) if held else None, **options,
                    )
                else:
                    if offset:
                        meta = await self.runtime.stores.streams.get_stream_meta(path)
                        before = meta.length if meta is not None else 0
                    sub, created = await self.store.admit(
                        path, input, kind=kind, dispatch_id=dispatch_id, max_queued=bounds.max_queued_per_instance,
                        **options,
                    )
            except QueueFull:
                raise InstanceQueueFull(
                    f"agent instance {agent}/{instance_id} already holds {bounds.max_queued_per_instance} unsettled "
                    "submissions (coordinator.max_queued_per_instance); retry once some have settled"
                ) from None
            claimed = created and sub.status == "running" and sub.lease_owner == self.owner
            if held and not claimed:
                self._reserved -= 1
                held = False
                self._freed()
            if created:
                remember_for(sub.submission_id, sub.seconds_left())  # configure_provider() of this request (issue 16)
                self._backlog += 1
                await self._observe(sub, "submission_admitted",
                                    lambda: SubmissionAdmitted(input=redact_images(input), event_index=0))
            if claimed:  # (only a held place claims)
                self._reserved -= 1  # the place goes to the running submission
                held = False
                self._start(sub)  # claimed with its admission
            else:
                self._wake.set()
            return sub, created, before
        finally:
            if held:  # the admission failed, or was cancelled while its observers ran
                self._reserved -= 1
                self._freed()

    async def _over_backlog(self, limit: int, dispatch_id: str | None) -> bool:
        """Whether the store's backlog is at ``limit``. The count is read at most every BACKLOG_TTL_S
        and counted up by this process's admissions in between: it can be overshot only by the
        admissions in flight at once here and those of other replicas within the last half second
        (never reserving a place for an admission that may still be refused for its instance keeps
        a burst at one instance a 429, not a 503)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._backlog_read_at >= BACKLOG_TTL_S:
            async with self._backlog_lock:
                if loop.time() - self._backlog_read_at >= BACKLOG_TTL_S:
                    self._backlog = await self.store.count_unsettled()
                    self._backlog_read_at = loop.time()
        if self._backlog < limit:
            return False
        # a replay of an admitted dispatch adds nothing: let it through to get its receipt
        return dispatch_id is None or await self.store.get_by_dispatch_id(dispatch_id) is None

    async def admit_prompt(
        self, agent: str, instance_id: str, message: str, *, images: list[dict[str, Any]] | None = None,
        session: str = "default",
    ) -> tuple[Submission, str]:
        """Admit a prompt (HTTP, WebSocket); return it with the stream offset just before it,
        from which a reader replays the whole interaction (``-1`` on a fresh instance)."""
        sub, _created, before = await self._admit(
            agent, instance_id, prompt_input(message, images=images, session=session), offset=True
        )
        if before is None:  # a closed stream took no admission event
            meta = await self.runtime.stores.streams.get_stream_meta(instance_path(agent, instance_id))
            before = meta.length if meta is not None else 0
        return sub, format_offset(before) if before else "-1"

    async def _observe(self, sub: Submission, event_type: str, make: Callable[[], FlueEvent]) -> None:
        """Show a lifecycle event (already on the stream, written by the store) to observers only
        (built only when one listens)."""
        if not self.runtime.sink.listens_for(event_type):
            return
        event = make()
        agent, instance_id = split_instance(sub.instance)
        await self.runtime.sink.child(
            instance_id=instance_id, agent_name=agent, submission_id=sub.submission_id, dispatch_id=sub.dispatch_id
        ).emit(event)

    async def wait(
        self, submission_id: str, *, timeout: float | None = None, admitted: Submission | None = None
    ) -> Submission:
        """Wait for a submission to settle (settled here or by another process). ``admitted``: the
        submission as its admission just returned it; unsettled, it spares the first read (one
        that settles before the wait begins is still found, by the next poll)."""
        async def poll() -> Submission:
            future: asyncio.Future[Submission] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(submission_id, []).append(future)
            known = admitted if admitted is not None and not admitted.settled else None
            try:
                while True:
                    sub, known = known or await self.store.get(submission_id), None
                    if sub is None:
                        raise KeyError(f"unknown submission {submission_id}")
                    if sub.settled:
                        return sub
                    with contextlib.suppress(TimeoutError):  # timeout(), not wait_for(): no task per wait
                        async with asyncio.timeout(max(self.poll_interval, 0.05)):
                            return await asyncio.shield(future)
            finally:
                waiters = self._waiters.get(submission_id, [])
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    self._waiters.pop(submission_id, None)

        async with asyncio.timeout(timeout):
            return await poll()

    def _notify(self, sub: Submission) -> None:
        for future in self._waiters.pop(sub.submission_id, []):
            if not future.done():
                future.set_result(sub)

    # -- claiming ------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()  # before the claim: a wake that comes during it is not lost
            claimed = False
            if len(self._running) + self._reserved < self.max_concurrency:
                try:
                    sub = await self.store.claim_next(self.owner, lease_s=self.lease_s)
                except Exception as exc:  # database hiccup: back off and retry
                    _warn(f"claim failed: {exc!r}")
                    sub = None
                if sub is not None:
                    claimed = True
                    # Our own lease on it expired (a stalled loop) and we claimed it again: the
                    # earlier attempt is fenced off (journal, settle); stop it before the new one runs.
                    await self._retire(sub.submission_id)
                    if sub.status == "failed":
                        await self._emit_settled(sub)
                    else:
                        self._start(sub)
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_interval):
                        await self._wake.wait()

    def _start(self, sub: Submission) -> None:
        """Run a submission this coordinator holds the lease of."""
        task = asyncio.get_running_loop().create_task(self._run(sub), name=f"flue-{sub.submission_id}")
        self._running[sub.submission_id] = task
        task.add_done_callback(functools.partial(self._forget, sub.submission_id))

    def _forget(self, submission_id: str, task: asyncio.Task[None]) -> None:
        if self._running.get(submission_id) is task:
            del self._running[submission_id]
            self._freed()

    def _freed(self) -> None:
        """A place among ``max_concurrency`` came free: a claim loop that was full looks again
        (the store wakes it only when a settlement makes its instance's next head runnable)."""
        if len(self._running) + self._reserved + 1 >= self.max_concurrency:
            self._wake.set()

    async def _retire(self, submission_id: str) -> None:
        stale = self._running.pop(submission_id, None)
        if stale is not None:
            stale.cancel()
            await asyncio.gather(stale, return_exceptions=True)

    async def _renew_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.heartbeat_s)
            ids = [sid for sid in self._running if sid not in self._settling]
            if not ids:
                continue
            try:
                renewed = set(await self.store.renew(self.owner, ids, lease_s=self.lease_s))
            except Exception as exc:
                _warn(f"lease renewal failed: {exc!r}")
                continue
            for sid in ids:
                if sid not in renewed and sid in self._running and sid not in self._settling:
                    self._running[sid].cancel()  # lost the lease: someone else owns it now

    # -- running -------------------------------------------------------------------------

    async def _run(self, sub: Submission) -> None:
        init, guard_sessions = _harness_init()
        runtime = self.runtime
        use_admitted(sub.submission_id)  # this task's context: the admitting request's provider settings
        agent, instance_id = split_instance(sub.instance)
        # The attempt's context: its events are numbered from 1 (submission_admitted is 0).
        sink = runtime.sink.child(
            context=True, first_index=1,
            instance_id=instance_id, agent_name=agent, submission_id=sub.submission_id, dispatch_id=sub.dispatch_id,
        )
        writer = StreamWriter(runtime.stores.streams, sub.instance, linger_after=OPERATION_END)  # settle takes the last
        sink.subscribe(writer)
        status, result, error = "completed", None, None
        harness = None
        try:
            snapshot = await runtime.stores.snapshots.load_snapshot(sub.instance)
            sessions = guard_sessions(runtime, sub)  # respects session deletion markers (issue 16)
            harness = await init(
                agent,
                project=runtime.project,
                sink=sink,
                session_store=sessions,
                scope=sub.instance,
                observe=False,
                snapshot=snapshot,
                id=instance_id,
            )
            text, images, session_name = input_to_prompt(sub)
            session = await harness.sessions.get_or_create(session_name, store_new=False)
            finished = session.metadata.get("lastJournal") or {}
            if finished.get("key") == sub.submission_id:
                result = finished.get("result")  # it finished before the crash; only settling was lost
            else:
                entries = await self.store.journal(sub.submission_id) if sub.attempts > 1 else []
                journal = SubmissionJournal(runtime, sub, entries, harness.env, snapshot,
                                            session_key=session.key)
                sessions.journal = journal  # its last entry goes with the session's save
                try:  # the coordinator enforces the deadline (wait_for: the operation raises its own cancel error)
                    outcome = await asyncio.wait_for(
                        session.prompt(text, images=images, journal=journal), sub.seconds_left()
                    )
                except TimeoutError:
                    raise DeadlineExceeded(sub.deadline_at) from None
                result = outcome.response(with_data=outcome.data is not None)
                await journal.flush()
                await journal.save_snapshot()
        except asyncio.CancelledError:
            # Shutdown or a lost lease: leave the submission to whoever holds it now.
            await writer.drain()
            raise
        except Exception as exc:
            if _caused_by_lease_loss(exc):  # another coordinator holds it now
                await writer.drain()
                return
            status, error = "failed", error_info(exc)
        finally:
            if harness is not None:
                await harness.close()
        # From here on the lease is no longer renewed: the renew loop must not take a
        # settled submission (no longer "running") for a lost one and cancel its last events.
        self._settling.add(sub.submission_id)
        try:
            index = sink.next_index
            settle_with = getattr(self.store, "settle_with", None)  # optional: the last events go with it
            if settle_with is not None:
                writer.hold()
                settled, final = await settle_with(
                    sub.submission_id, self.owner, status=status, result=result, error=error, attempt=sub.attempts,
                    event_index=index, events=await writer.take(),
                )
                if settled and final is None:  # a replayed settle: read what the first one wrote
                    final = await self.store.get(sub.submission_id)
            else:
                await writer.drain()  # everything before the settlement event, which the store appends
                settled = await self.store.settle(
                    sub.submission_id, self.owner, status=status, result=result, error=error, attempt=sub.attempts,
                    event_index=index,
                )
                final = await self.store.get(sub.submission_id) if settled else None
            if settled:
                await self._observe(sub, "submission_settled", lambda: SubmissionSettled(
                    outcome=status, result=result if status == "completed" else None, error=error, event_index=index,
                ))
                if final is not None:
                    self._notify(final)  # waiters in this process; others (a fenced attempt) poll the store
        finally:
            self._settling.discard(sub.submission_id)

    async def _emit_settled(self, sub: Submission) -> None:
        """A head the store failed on claim (deadline or attempts); the store put the settlement
        on its stream."""
        await self._observe(sub, "submission_settled",
                            lambda: SubmissionSettled(outcome="failed", error=sub.error, event_index=1))
        self._notify(sub)


@functools.cache
def _harness_init() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``flue.harness.init`` and the session guard, imported on first use (not at import: the
    harness pulls in the sandboxes) and then not looked up per submission."""
    from flue.harness import init
    from flue.runtime.deletion import guard_sessions

    return init, guard_sessions


def _caused_by_lease_loss(exc: BaseException) -> bool:
    """A LeaseLost raised inside a tool's work comes back wrapped (TaskGroup, tool errors)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, LeaseLost):
            return True
        if isinstance(e, BaseExceptionGroup):
            stack.extend(e.exceptions)
        for nxt in (e.__cause__, e.__context__):
            if nxt is not None:
                stack.append(nxt)
    return False


def _warn(message: str) -> None:
    import sys

    print(f"flue coordinator: {message}", file=sys.stderr)
