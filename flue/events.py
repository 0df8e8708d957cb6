"""Typed events: the single vocabulary of everything that happens.

Every event is a pydantic model with a ``type`` discriminator and a timestamp.
Agent activity carries ``harness``, ``session``, ``operationId`` and (inside a
turn) ``turnId``; agent-instance events add ``instanceId``/``submissionId``;
workflow events carry ``runId``. On the wire (streams, observers, persistence)
events are JSON objects with camelCase keys: ``event.wire()``.

Emitters call an :class:`EventSink`; streams, persistence and ``flue_observe``
plugins subscribe to it. Secrets, credentials and raw webhook bodies never go
into events.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.alias_generators import to_camel

from flue.usage import Usage


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class BaseEvent(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    type: str
    timestamp: str = Field(default_factory=_now)
    # correlation ids; absent where they do not apply
    run_id: str | None = None
    instance_id: str | None = None
    agent: str | None = None
    submission_id: str | None = None
    dispatch_id: str | None = None
    harness: str | None = None
    session: str | None = None
    operation_id: str | None = None
    turn_id: str | None = None

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class RunStart(BaseEvent):
    type: Literal["run_start"] = "run_start"
    workflow: str
    payload: Any = None


class RunResume(BaseEvent):
    type: Literal["run_resume"] = "run_resume"
    attempt: int


class RunEnd(BaseEvent):
    type: Literal["run_end"] = "run_end"
    duration_ms: float
    is_error: bool
    result: Any = None
    error: dict[str, Any] | None = None


class Log(BaseEvent):
    type: Literal["log"] = "log"
    level: Literal["info", "warn", "error"] = "info"
    message: str
    attributes: dict[str, Any] = Field(default_factory=dict)


class OperationStart(BaseEvent):
    type: Literal["operation_start"] = "operation_start"
    kind: Literal["prompt", "skill", "task", "shell"]
    input: Any = None


class OperationEnd(BaseEvent):
    type: Literal["operation_end"] = "operation_end"
    kind: Literal["prompt", "skill", "task", "shell"]
    duration_ms: float
    is_error: bool = False
    result: Any = None
    error: dict[str, Any] | None = None
    usage: Usage | None = None


class TurnStart(BaseEvent):
    type: Literal["turn_start"] = "turn_start"
    index: int
    model: str | None = None


class TurnEnd(BaseEvent):
    type: Literal["turn_end"] = "turn_end"
    index: int
    stop_reason: str | None = None
    text: str = ""
    tool_calls: int = 0
    usage: Usage | None = None


class TextDelta(BaseEvent):
    type: Literal["text_delta"] = "text_delta"
    delta: str


class ThinkingDelta(BaseEvent):
    type: Literal["thinking_delta"] = "thinking_delta"
    delta: str


class ToolCall(BaseEvent):
    type: Literal["tool_call"] = "tool_call"
    tool_call_id: str
    name: str
    arguments: Any = None


class ToolResult(BaseEvent):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    name: str
    output: str
    is_error: bool = False
    duration_ms: float = 0
    replayed: bool | None = None  # True: recorded by an earlier attempt (flue.harness.journal), not run again


class OperationResumed(BaseEvent):
    """A recovering attempt restored what an earlier one recorded (see ``flue.harness.journal``)."""

    type: Literal["operation_resumed"] = "operation_resumed"
    turns: int  # finished turns replayed without calling the model
    tool_results: int  # tool results replayed without running the tool
    partial_turn: bool = False  # the next turn reuses a recorded model answer


class UsageEvent(BaseEvent):
    type: Literal["usage"] = "usage"
    usage: Usage
    scope: Literal["turn", "operation", "session"] = "turn"


class ErrorEvent(BaseEvent):
    type: Literal["error"] = "error"
    error: dict[str, Any]


class TaskStart(BaseEvent):
    type: Literal["task_start"] = "task_start"
    task_id: str
    profile: str | None = None
    prompt: str


class TaskEnd(BaseEvent):
    type: Literal["task_end"] = "task_end"
    task_id: str
    is_error: bool = False
    result: Any = None


class CompactionStart(BaseEvent):
    type: Literal["compaction_start"] = "compaction_start"
    tokens_before: int


class CompactionEnd(BaseEvent):
    type: Literal["compaction_end"] = "compaction_end"
    tokens_after: int
    summary: str = ""


class SubmissionAdmitted(BaseEvent):
    type: Literal["submission_admitted"] = "submission_admitted"
    input: Any = None


class SubmissionSettled(BaseEvent):
    type: Literal["submission_settled"] = "submission_settled"
    status: Literal["completed", "failed"]
    result: Any = None
    error: dict[str, Any] | None = None


Event = Annotated[
    RunStart
    | RunResume
    | RunEnd
    | Log
    | OperationStart
    | OperationEnd
    | TurnStart
    | TurnEnd
    | TextDelta
    | ThinkingDelta
    | ToolCall
    | ToolResult
    | OperationResumed
    | UsageEvent
    | ErrorEvent
    | TaskStart
    | TaskEnd
    | CompactionStart
    | CompactionEnd
    | SubmissionAdmitted
    | SubmissionSettled,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: dict[str, Any]) -> BaseEvent:
    return EVENT_ADAPTER.validate_python(data)


Subscriber = Callable[[BaseEvent], Awaitable[None] | None]


class EventSink:
    """A node in a tree of event fan-outs.

    ``emit`` stamps this sink's ids on the event (without overwriting ids the
    event already has), calls this sink's subscribers, then passes the event
    up to the parent. So subscribing on the root sees everything, and
    subscribing on ``sink.child(run_id=...)`` sees only that run's events.
    A failing subscriber is reported once on stderr and never breaks the emitter.
    """

    def __init__(
        self,
        subscribers: list[Subscriber] | None = None,
        ids: dict[str, Any] | None = None,
        parent: EventSink | None = None,
    ):
        self._subscribers: list[Subscriber] = list(subscribers or [])
        self._ids = {k: v for k, v in (ids or {}).items() if v is not None}
        self._parent = parent

    @property
    def ids(self) -> dict[str, Any]:
        return {**(self._parent.ids if self._parent else {}), **self._ids}

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subscribers.append(fn)
        return lambda: self._subscribers.remove(fn) if fn in self._subscribers else None

    def child(self, **ids: Any) -> EventSink:
        return EventSink(ids=ids, parent=self)

    async def emit(self, event: BaseEvent) -> BaseEvent:
        for key, value in self._ids.items():
            if getattr(event, key, None) is None:
                setattr(event, key, value)
        for fn in list(self._subscribers):
            try:
                out = fn(event)
                if inspect.isawaitable(out):
                    await out
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an observer must never break the run
                _report_subscriber_error(fn, exc)
        if self._parent is not None:
            await self._parent.emit(event)
        return event

    def emit_nowait(self, event: BaseEvent) -> BaseEvent:
        """Emit from synchronous code (e.g. ``ctx.log.info``).

        Synchronous subscribers (stream writers) run now, so ordering with other
        events is exact; async subscribers are scheduled on the running loop.
        """
        for key, value in self._ids.items():
            if getattr(event, key, None) is None:
                setattr(event, key, value)
        for fn in list(self._subscribers):
            try:
                out = fn(event)
                if inspect.isawaitable(out):
                    task = asyncio.ensure_future(out)
                    _pending.add(task)
                    task.add_done_callback(_pending.discard)
            except Exception as exc:
                _report_subscriber_error(fn, exc)
        if self._parent is not None:
            self._parent.emit_nowait(event)
        return event


_pending: set[asyncio.Future[Any]] = set()


_reported: set[int] = set()


def _report_subscriber_error(fn: Any, exc: Exception) -> None:
    import sys

    if id(fn) not in _reported:
        _reported.add(id(fn))
        print(f"flue: event subscriber {getattr(fn, '__qualname__', fn)!r} failed: {exc!r}", file=sys.stderr)


def monotonic_ms() -> float:
    return time.monotonic() * 1000
