"""Typed events: Flue's event vocabulary, exactly, on every stream and observer.

Every event is a pydantic model: a variant (``type`` plus its fields) inside
an envelope. On the wire (streams, observers, ``flue run``) an event is a JSON
object with camelCase keys, ``event.wire()``. The vocabulary is Flue 1.0's
(``flue-reference.md`` section 7), so a client written for the TypeScript
Flue reads our streams unchanged.

**Envelope.** ``v`` (the format version), ``eventIndex`` (a per-context
counter: per workflow run, per agent submission attempt), ``timestamp``, and
the correlation ids that apply: ``runId`` (workflow contexts) or
``instanceId`` (agent contexts) with ``agentName``, ``submissionId``,
``dispatchId``, ``harness``, ``session``, ``parentSession`` and ``taskId``
(task child sessions), ``operationId`` and ``turnId``.

``v`` is **3**: the event-format version that the nearest published client,
``@flue/sdk`` 1.0.0-beta.5, requires (it rejects any other value). The seeds'
beta.1 pages say ``v: 1``; the fields beta.1 and beta.5 name differently are
both present (``run_start.payload`` and ``.input``; ``turn``'s flat
``model``/``usage``/``output``/``stopReason`` and its ``request``/``response``),
so a consumer of either reads what it expects.

**Variants** (one class each below): ``run_start``, ``run_resume``,
``run_end``; ``operation_start``, ``agent_start``, ``message_start``,
``message_end``, ``turn_start``, ``turn_request``, ``text_delta``,
``thinking_start``/``thinking_delta``/``thinking_end``, ``tool_start``,
``tool``, ``turn_messages``, ``turn``, ``agent_end``, ``operation``, ``idle``;
``task_start``/``task``; ``compaction_start``/``compaction``; ``log``;
``submission_settled``. One addition of ours: ``submission_admitted`` (the
input of an admitted prompt or dispatch, first on an agent stream).

**Typical sequences** (workflow ``session.prompt``, one turn)::

    operation_start agent_start message_start(user) message_end(user) turn_start
    turn_request message_start(assistant) text_delta... message_end(assistant)
    turn_messages turn agent_end operation idle

A tool turn adds ``tool_start``/``tool`` per call after the assistant's
``message_end``, then the next ``turn_start ... turn``. A durable agent
submission (HTTP prompt, dispatch) has no user ``message_start``/``message_end``
(its input is ``submission_admitted``) and ends with ``submission_settled``.

**Routing.** ``turn_request`` (the whole model input) goes to observers and
``flue run`` only, never to persisted streams, so a long conversation's stream
grows linearly. Image data in messages, tool results and ``turn_request`` is
replaced by :data:`IMAGE_DATA_OMITTED` (history keeps the bytes). Errors are
``{name, message}`` plus ``type`` (the wire error type) for Flue's own errors.
Secrets, credentials and raw webhook bodies never go into events.

Emitters call an :class:`EventSink`; stream writers subscribe to the sink of
their context, ``flue_observe`` plugins and :func:`observe` subscribers see
every event of the process.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from flue.clock import ms_to_iso
from flue.redaction import observed, scrub, scrub_encoded
from flue.strict_json import fast_text
from flue.usage import Usage

EVENT_VERSION = 3
IMAGE_DATA_OMITTED = "[image data omitted from event]"

OperationKind = Literal["prompt", "skill", "task", "shell", "compact"]
TurnPurpose = Literal["agent", "compaction", "compaction_prefix"]


def _now() -> str:
    return ms_to_iso(int(time.time() * 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


def monotonic_ms() -> float:
    return time.monotonic() * 1000


class FlueEvent(BaseModel):
    """The envelope every event carries; variants add their own fields."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    # Variant fields that are sent as ``null`` rather than left out when None.
    KEEP_NULL: ClassVar[frozenset[str]] = frozenset()

    type: str
    v: int = EVENT_VERSION
    event_index: int | None = None
    timestamp: str = Field(default_factory=_now)
    run_id: str | None = None
    instance_id: str | None = None
    agent_name: str | None = None
    dispatch_id: str | None = None
    submission_id: str | None = None
    harness: str | None = None
    session: str | None = None
    parent_session: str | None = None
    task_id: str | None = None
    operation_id: str | None = None
    turn_id: str | None = None

    # The wire form's cache: a slot, not a pydantic private attribute (those cost a microsecond
    # more per event made); outside the fields, so dumps, copies and equality never see it.
    __slots__ = ("_flue_wire",)

    def wire(self) -> dict[str, Any]:
        """The JSON object of this event (computed once, after the ids are stamped): a
        :class:`WireDict`, which carries its JSON text for the stream store, unless a known
        secret had to be scrubbed out of it."""
        try:
            wire: dict[str, Any] | None = _WIRE_SLOT.__get__(self)
        except AttributeError:  # not computed yet
            wire = None
        if wire is None:
            wire = _wire_form(self)
            _WIRE_SLOT.__set__(self, wire)
        return wire

    def stamp(self, ids: dict[str, Any]) -> None:
        """Fill in correlation ids the event does not have yet."""
        fields = self.__dict__  # the declared id fields: set them without pydantic's __setattr__ (hot path)
        for key, value in ids.items():
            if key in fields:
                if fields[key] is None:
                    fields[key] = value
            elif getattr(self, key, None) is None:
                setattr(self, key, value)
        _WIRE_SLOT.__set__(self, None)


BaseEvent = FlueEvent  # the name plugins used before the 1.0 vocabulary
_WIRE_SLOT: Any = FlueEvent.__dict__["_flue_wire"]  # the slot's descriptor: no pydantic __getattr__ on a miss


class WireDict(dict[str, Any]):
    """An event's wire form with ``json``, its JSON text as the stream store writes it (encoded
    once: the secret search needs the text anyway, and ``flue.persistence.kit.dumps`` reuses it)."""

    __slots__ = ("json",)

    def __init__(self, data: dict[str, Any], json: str) -> None:
        super().__init__(data)
        self.json = json


def _wire_form(event: FlueEvent) -> dict[str, Any]:
    keep = event.KEEP_NULL
    data = event.model_dump(mode="json", by_alias=True, exclude_none=not keep)  # None inside values stays
    if keep:
        data = {k: v for k, v in data.items() if v is not None or k in keep}
    text = fast_text(data)  # None: the store's json decides
    data, unchanged = scrub_encoded(data, text)  # known secrets
    return WireDict(data, text) if unchanged and text is not None else data


# -- workflow runs ------------------------------------------------------------------------


class RunStart(FlueEvent):
    type: Literal["run_start"] = "run_start"
    workflow_name: str
    started_at: str
    payload: Any = None  # beta.1's name
    input: Any = None  # beta.5's name for the same value
    KEEP_NULL = frozenset({"payload", "input"})


class RunResume(FlueEvent):
    """Recovery is handling an interrupted run; an errored ``run_end`` follows (``flue.runtime.run_recovery``)."""

    type: Literal["run_resume"] = "run_resume"
    workflow_name: str
    started_at: str


class RunEnd(FlueEvent):
    type: Literal["run_end"] = "run_end"
    result: Any = None
    is_error: bool
    error: dict[str, Any] | None = None
    duration_ms: float
    KEEP_NULL = frozenset({"result"})


# -- operations, the agent loop and its turns -------------------------------------------------


class OperationStart(FlueEvent):
    type: Literal["operation_start"] = "operation_start"
    operation_kind: OperationKind


class Operation(FlueEvent):
    type: Literal["operation"] = "operation"
    operation_kind: OperationKind
    duration_ms: float
    is_error: bool = False
    error: dict[str, Any] | None = None
    result: Any = None
    usage: Usage | None = None


class Idle(FlueEvent):
    """After every operation: the session can take the next one."""

    type: Literal["idle"] = "idle"


class AgentStart(FlueEvent):
    type: Literal["agent_start"] = "agent_start"


class AgentEnd(FlueEvent):
    type: Literal["agent_end"] = "agent_end"
    messages: list[dict[str, Any]] = Field(default_factory=list)


class MessageStart(FlueEvent):
    type: Literal["message_start"] = "message_start"
    message: dict[str, Any]


class MessageEnd(FlueEvent):
    type: Literal["message_end"] = "message_end"
    message: dict[str, Any]


class TurnStart(FlueEvent):
    type: Literal["turn_start"] = "turn_start"
    purpose: TurnPurpose = "agent"


class TurnRequest(FlueEvent):
    """The whole model input of a turn: observers and ``flue run`` only (never persisted)."""

    type: Literal["turn_request"] = "turn_request"
    purpose: TurnPurpose = "agent"
    model: str
    provider: str
    api: str
    input: dict[str, Any]
    reasoning: str | None = None
    request: dict[str, Any] | None = None  # beta.5: ModelRequest {providerId, ..., input}


class TurnMessages(FlueEvent):
    type: Literal["turn_messages"] = "turn_messages"
    purpose: TurnPurpose = "agent"
    message: dict[str, Any]
    tool_results: list[dict[str, Any]] = Field(default_factory=list)


class Turn(FlueEvent):
    type: Literal["turn"] = "turn"
    purpose: TurnPurpose = "agent"
    duration_ms: float
    model: str | None = None
    provider: str | None = None
    api: str | None = None
    output: dict[str, Any] | None = None
    usage: Usage | None = None
    stop_reason: str | None = None
    is_error: bool = False
    error: Any = None
    request: dict[str, Any] | None = None  # beta.5: ModelRequestInfo
    response: dict[str, Any] | None = None  # beta.5: ModelResponse


class TextDelta(FlueEvent):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ThinkingStart(FlueEvent):
    type: Literal["thinking_start"] = "thinking_start"


class ThinkingDelta(FlueEvent):
    type: Literal["thinking_delta"] = "thinking_delta"
    delta: str


class ThinkingEnd(FlueEvent):
    type: Literal["thinking_end"] = "thinking_end"
    content: str


class ToolStart(FlueEvent):
    type: Literal["tool_start"] = "tool_start"
    tool_name: str
    tool_call_id: str
    args: Any = None


class ToolEvent(FlueEvent):
    """A tool call finished; ``result`` is ``{content: [{type: "text", text}], details?}``."""

    type: Literal["tool"] = "tool"
    tool_name: str
    tool_call_id: str
    is_error: bool = False
    result: Any = None
    duration_ms: float = 0
    replayed: bool | None = None  # ours: recorded by an earlier attempt (flue.harness.journal), not run again


class TaskStart(FlueEvent):
    type: Literal["task_start"] = "task_start"
    prompt: str
    agent: str | None = None
    cwd: str | None = None


class TaskEvent(FlueEvent):
    type: Literal["task"] = "task"
    agent: str | None = None
    is_error: bool = False
    result: Any = None
    duration_ms: float = 0


class CompactionStart(FlueEvent):
    type: Literal["compaction_start"] = "compaction_start"
    reason: Literal["threshold", "overflow", "manual"] = "threshold"
    estimated_tokens: int


class Compaction(FlueEvent):
    type: Literal["compaction"] = "compaction"
    messages_before: int
    messages_after: int
    duration_ms: float
    is_error: bool = False
    error: Any = None
    usage: Usage | None = None


class Log(FlueEvent):
    type: Literal["log"] = "log"
    level: Literal["info", "warn", "error"] = "info"
    message: str
    attributes: dict[str, Any] | None = None


# -- durable agent submissions ---------------------------------------------------------------


class SubmissionAdmitted(FlueEvent):
    """Ours: an admitted prompt or dispatch (its input, images redacted), first on the stream."""

    type: Literal["submission_admitted"] = "submission_admitted"
    input: Any = None


class SubmissionSettled(FlueEvent):
    type: Literal["submission_settled"] = "submission_settled"
    outcome: Literal["completed", "failed"]
    result: Any = None
    error: dict[str, Any] | None = None


Event = Annotated[
    RunStart | RunResume | RunEnd | OperationStart | Operation | Idle | AgentStart | AgentEnd
    | MessageStart | MessageEnd | TurnStart | TurnRequest | TurnMessages | Turn | TextDelta
    | ThinkingStart | ThinkingDelta | ThinkingEnd | ToolStart | ToolEvent | TaskStart | TaskEvent
    | CompactionStart | Compaction | Log | SubmissionAdmitted | SubmissionSettled,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: Event types written to durable streams: every one but ``turn_request``.
STREAM_EXCLUDED: frozenset[str] = frozenset({"turn_request"})


# -- content shaping ----------------------------------------------------------------------------


def redact_images(value: Any) -> Any:
    """A copy of ``value`` in which every image block's ``data`` is :data:`IMAGE_DATA_OMITTED`
    (Flue's ``{type: "image", data, mimeType}`` and OpenAI's ``image_url`` data URLs)."""
    if isinstance(value, list):
        return [redact_images(v) for v in value]
    if not isinstance(value, dict):
        return value
    kind = value.get("type")
    if kind == "image" and "data" in value:
        return {**value, "data": IMAGE_DATA_OMITTED}
    if kind == "image_url" and isinstance(value.get("image_url"), dict):
        url = str(value["image_url"].get("url") or "")
        if url.startswith("data:"):
            return {**value, "image_url": {**value["image_url"], "url": url.split(",", 1)[0] + "," + IMAGE_DATA_OMITTED}}
        return value
    return {k: redact_images(v) for k, v in value.items()}


# -- sinks ----------------------------------------------------------------------------------------


Subscriber = Callable[[FlueEvent], Awaitable[None] | None]
GlobalObserver = Callable[[FlueEvent, dict[str, Any]], Awaitable[None] | None]

_GLOBAL: list[GlobalObserver] = []


def observe(fn: GlobalObserver) -> Callable[[], None]:
    """Subscribe ``fn(event, context)`` to every event of every context in this process
    (``turn_request`` included), as Flue's ``observe()``. Returns the unsubscribe function.

    ``fn`` runs at emit time, after the context's own subscribers (stream writers);
    it may be sync or async (a coroutine is scheduled, not awaited). A failure is
    reported once on stderr and delivery continues. ``context`` holds the event's
    correlation ids (snake_case). No replay of earlier events.
    """
    _GLOBAL.append(fn)

    def unsubscribe() -> None:
        if fn in _GLOBAL:
            _GLOBAL.remove(fn)

    return unsubscribe


_ID_FIELDS = ("run_id", "instance_id", "agent_name", "submission_id", "dispatch_id", "harness", "session",
              "parent_session", "task_id", "operation_id", "turn_id")


def event_context(event: FlueEvent, **extra: Any) -> dict[str, Any]:
    """What observers receive beside the event: its correlation ids, plus ``extra``."""
    context = {k: v for k in _ID_FIELDS if (v := getattr(event, k, None)) is not None}
    context.update(extra)
    return context


def _call_isolated(fn: Any, args: tuple[Any, ...], name: Any) -> Awaitable[Any] | None:
    """Call a subscriber; a failure is reported once and never reaches the emitter."""
    try:
        out = fn(*args)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        report_failure(name, exc)
        return None
    return out if inspect.isawaitable(out) else None


def _notify_global(event: FlueEvent) -> None:
    if not _GLOBAL:
        return
    context, event = event_context(event), observed(event)  # observers never see a known secret
    for fn in list(_GLOBAL):
        out = _call_isolated(fn, (event, context), fn)
        if out is not None:
            _track(_guarded(out, fn))


async def _guarded(awaitable: Awaitable[Any], name: Any) -> None:
    try:
        await awaitable
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        report_failure(name, exc)


class EventSink:
    """A node in a tree of event fan-outs.

    ``emit`` stamps this sink's ids on the event (without overwriting ids the
    event already has), numbers it when this sink is a *context* (a workflow
    run, an agent submission attempt, a harness without a parent: ``eventIndex``
    counts per context), calls this sink's subscribers, then passes the event
    up to the parent; the root hands it to :func:`observe` subscribers. So
    subscribing on the root sees everything, and subscribing on
    ``sink.child(run_id=...)`` sees only that run's events. A failing
    subscriber is reported once on stderr and never breaks the emitter.
    """

    def __init__(
        self,
        subscribers: list[Subscriber] | None = None,
        ids: dict[str, Any] | None = None,
        parent: EventSink | None = None,
        *,
        context: bool | None = None,
        first_index: int = 0,
    ):
        self._subscribers: list[Subscriber] = list(subscribers or [])
        self._ids = {k: v for k, v in (ids or {}).items() if v is not None}
        self._parent = parent
        if context is None:  # a root numbers whatever no inner context numbered
            context = parent is None
        self._next_index: int | None = first_index if context else None

    @property
    def ids(self) -> dict[str, Any]:
        return {**(self._parent.ids if self._parent else {}), **self._ids}

    @property
    def next_index(self) -> int | None:
        """The ``eventIndex`` the next event of this context gets (None: not a context)."""
        return self._next_index

    def listens_for(self, event_type: str) -> bool:
        """Whether any subscriber up the chain (or an :func:`observe` subscriber) takes events of
        this type, so costly events (``turn_request``) are built only for someone. A subscriber
        declines types by listing them in a ``skip_types`` attribute (stream writers do)."""
        if _GLOBAL:
            return True
        sink: EventSink | None = self
        while sink is not None:
            for fn in sink._subscribers:
                if event_type not in getattr(fn, "skip_types", ()):
                    return True
            sink = sink._parent
        return False

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def child(self, *, context: bool | None = False, first_index: int = 0, **ids: Any) -> EventSink:
        return EventSink(ids=ids, parent=self, context=context, first_index=first_index)

    def _stamp(self, event: FlueEvent) -> None:
        if self._ids:
            event.stamp(self._ids)
        if self._next_index is not None and event.event_index is None:
            event.event_index = self._next_index
            self._next_index += 1

    async def emit(self, event: FlueEvent) -> FlueEvent:
        sink: EventSink | None = self
        while sink is not None:
            sink._stamp(event)
            for fn in list(sink._subscribers):
                out = _call_isolated(fn, (event,), fn)
                if out is not None:
                    try:
                        await out
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:  # an observer must never break the run
                        report_failure(fn, exc)
            if sink._parent is None:
                _notify_global(event)
            sink = sink._parent
        return event

    def emit_nowait(self, event: FlueEvent) -> FlueEvent:
        """Emit from synchronous code (e.g. ``ctx.log.info``).

        Synchronous subscribers (stream writers) run now, so ordering with other
        events is exact; async subscribers are scheduled on the running loop.
        """
        sink: EventSink | None = self
        while sink is not None:
            sink._stamp(event)
            for fn in list(sink._subscribers):
                out = _call_isolated(fn, (event,), fn)
                if out is not None:
                    _track(_guarded(out, fn))
            if sink._parent is None:
                _notify_global(event)
            sink = sink._parent
        return event


_pending: set[asyncio.Future[Any]] = set()


def _track(awaitable: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(awaitable)
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_reported: set[int] = set()


def report_failure(fn: Any, exc: BaseException) -> None:
    """Say once per subscriber, on stderr, that it failed (delivery to the others goes on)."""
    if id(fn) not in _reported:
        _reported.add(id(fn))
        label = fn if isinstance(fn, str) else getattr(fn, "__qualname__", fn)
        print(scrub(f"flue: event subscriber {label!r} failed and is ignored: {exc!r}"), file=sys.stderr)
