"""Flue's events, as they happen, projected onto OpenTelemetry spans and metrics.

Span names, kinds and ``flue.*`` attributes are those of Flue's own adapter
(``@flue/opentelemetry``'s ``createOpenTelemetryObserver``), with the GenAI
semantic conventions' ``gen_ai.*`` attributes beside them:

- ``flue.workflow <workflowName>``: ``run_start`` (or ``run_resume``) to ``run_end``;
- ``flue.submission <agentName>``: ``submission_admitted`` to ``submission_settled``;
- ``flue.operation <kind>``: ``operation_start`` to ``operation``;
- ``chat <model>`` (CLIENT): ``turn_start`` to ``turn``;
- ``flue.tool <toolName>``: ``tool_start`` to ``tool``;
- ``flue.task <agent>``: ``task_start`` to ``task``;
- ``flue.compaction``: ``compaction_start`` to ``compaction``.

An operation is a child of the ``task`` tool call that started it, else of
its task (a task's child session), else of its submission, else of its
workflow run; turns and tool calls are children of their operation
(compaction turns of the compaction). A span starts and ends at its events'
timestamps; a ``chat`` span ends when the answer is complete (the assistant's
``message_end``), before the tools it asked for run. When a span ends, any
descendant still open ends with ERROR (its closing event never came).
``log`` events become ``flue.log`` span events on the innermost open span.

Message contents (prompts, answers, tool arguments and results, payloads,
results, log messages) go on spans only with ``capture_content``, after
:func:`flue.redaction.scrub`, cut at ``max_content_length`` characters.
Observers already receive events without the project's known secrets.

Runs in the observer, on the event loop: every call is a few dictionary
operations and the SDK's non-blocking span end (the batch processor exports
in its own thread).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from flue import events as ev
from flue.redaction import scrub

MAX_OPEN = 10_000  # spans whose closing event never came (a crash elsewhere) are dropped past this

# (event field, Flue's attribute, the alias the tooling/opentelemetry blueprint's spans use)
_IDS: tuple[tuple[str, str, str | None], ...] = (
    ("run_id", "flue.run.id", "flue.run_id"),
    ("instance_id", "flue.instance.id", "flue.instance_id"),
    ("submission_id", "flue.submission.id", "flue.submission_id"),
    ("dispatch_id", "flue.dispatch.id", None),
    ("harness", "flue.harness.name", None),
    ("session", "flue.session.name", "flue.session"),
    ("parent_session", "flue.parent_session.name", None),
    ("operation_id", "flue.operation.id", None),
    ("task_id", "flue.task.id", None),
    ("turn_id", "flue.turn.id", None),
)
_KINDS = {"run": "workflow run", "sub": "submission", "op": "operation", "turn": "turn", "tool": "tool call",
          "task": "task", "compaction": "compaction"}
_AGENT_KINDS = frozenset({"prompt", "skill", "task"})  # operations that run the agent loop
# the GenAI conventions' gen_ai.client.operation.duration buckets (seconds)
_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

Key = tuple[str, str]


@dataclass
class _Open:
    span: Any
    parent: Key | None
    name: str | None = None  # a workflow's or tool's name; a turn's model once known
    children: set[Key] = field(default_factory=set)
    started: int | None = None
    answered: int | None = None  # a turn: when the model's answer was complete (its tools run after)
    session: tuple[Any, ...] | None = None  # an operation: (run or instance, harness, session)


def _ns(timestamp: str | None) -> int | None:
    """An event's ISO 8601 timestamp in nanoseconds since the epoch."""
    if not timestamp:
        return None
    try:
        return int(datetime.fromisoformat(timestamp).timestamp() * 1_000_000_000)
    except ValueError:
        return None


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in attributes.items() if v is not None}


def _error_parts(error: Any, fallback: str) -> tuple[str, str]:
    """(error.type, message) of an event's error: ``{name, message, type?}`` or a string."""
    if isinstance(error, dict):
        kind = str(error.get("type") or error.get("name") or "error")
        return kind, str(scrub(error.get("message") or fallback))
    if isinstance(error, str) and error:
        return "error", str(scrub(error))
    return "error", fallback


def _fail(span: Any, kind: str, message: str, at: int | None) -> None:
    """Status ERROR plus the conventions' ``exception`` event (what ``record_exception`` writes)."""
    span.set_attribute("error.type", kind)
    span.add_event("exception", {"exception.type": kind, "exception.message": message}, timestamp=at)
    span.set_status(Status(StatusCode.ERROR, message))


def _usage_attributes(prefix: str, usage: Any) -> dict[str, Any]:
    if usage is None:
        return {}
    return {f"{prefix}.input_tokens": usage.input, f"{prefix}.output_tokens": usage.output,
            f"{prefix}.cache_read_tokens": usage.cache_read, f"{prefix}.cache_write_tokens": usage.cache_write,
            f"{prefix}.total_tokens": usage.total_tokens, f"{prefix}.cost_total": usage.cost.total}


def _gen_ai_usage(usage: Any) -> dict[str, Any]:
    """The conventions' token counts: input tokens include those read from or written to the cache."""
    if usage is None:
        return {}
    return {"gen_ai.usage.input_tokens": usage.input + usage.cache_read + usage.cache_write,
            "gen_ai.usage.output_tokens": usage.output,
            "gen_ai.usage.cache_read.input_tokens": usage.cache_read,
            "gen_ai.usage.cache_creation.input_tokens": usage.cache_write}


class Instruments:
    """The metrics: token and cost counters, turn, operation, workflow and tool durations.
    Their dimensions are names (model, provider, agent, workflow, tool), never ids."""

    def __init__(self, meter: Any):
        buckets = {"explicit_bucket_boundaries_advisory": list(_DURATION_BUCKETS)}
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Tokens per model call, by gen_ai.token.type",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS))
        self.turn_duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="Duration of model calls (turns)", **buckets)
        self.tokens = meter.create_counter(
            "flue.usage.tokens", unit="{token}", description="Tokens used, by gen_ai.token.type "
            "(input, output, cache_read, cache_write)")
        self.cost = meter.create_counter("flue.usage.cost", unit="USD", description="Cost of model calls")
        self.operation_duration = meter.create_histogram(
            "flue.operation.duration", unit="s", description="Duration of operations (prompt, skill, task, shell, "
            "compact)", **buckets)
        self.workflow_duration = meter.create_histogram(
            "flue.workflow.duration", unit="s", description="Duration of workflow runs", **buckets)
        self.tool_duration = meter.create_histogram(
            "flue.tool.duration", unit="s", description="Duration of tool calls", **buckets)

    def turn(self, event: ev.Turn, seconds: float, error_type: str | None) -> None:
        dims = _clean({"gen_ai.operation.name": "chat", "gen_ai.provider.name": event.provider,
                       "gen_ai.request.model": event.model, "flue.turn.purpose": event.purpose,
                       "error.type": error_type})
        self.turn_duration.record(seconds, dims)
        usage = event.usage
        if usage is None:
            return
        dims.pop("error.type", None)
        self.token_usage.record(usage.input + usage.cache_read + usage.cache_write, {**dims, "gen_ai.token.type": "input"})
        self.token_usage.record(usage.output, {**dims, "gen_ai.token.type": "output"})
        for kind, count in (("input", usage.input), ("output", usage.output), ("cache_read", usage.cache_read),
                            ("cache_write", usage.cache_write)):
            if count:
                self.tokens.add(count, {**dims, "gen_ai.token.type": kind})
        if usage.cost.total:
            self.cost.add(usage.cost.total, dims)


class Projection:
    """One process's open spans, fed every event by the plugin's ``flue_observe``."""

    def __init__(self, tracer: Any, instruments: Instruments | None, *, capture_content: bool = False,
                 max_content_length: int = 8192):
        self.tracer = tracer
        self.instruments = instruments
        self.capture_content = capture_content
        self.max_content_length = max_content_length
        self.open: dict[Key, _Open] = {}

    # -- the dispatcher ---------------------------------------------------------------------

    def handle(self, event: ev.FlueEvent) -> None:
        handler = _HANDLERS.get(event.type)
        if handler is not None:
            handler(self, event)

    # -- span bookkeeping ---------------------------------------------------------------------

    def _content(self, value: Any) -> str | None:
        """``value`` as a content attribute, or None when contents are not captured."""
        if not self.capture_content or value is None:
            return None
        text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
        text = scrub(text)
        return text if len(text) <= self.max_content_length else text[: self.max_content_length] + "…"

    def _start(self, key: Key, name: str, parent: Key | None, event: ev.FlueEvent, attributes: dict[str, Any],
               kind: SpanKind = SpanKind.INTERNAL, *, label: str | None = None) -> None:
        if key in self.open:
            return
        if len(self.open) >= MAX_OPEN:
            oldest = next(iter(self.open))
            self._end(oldest, None, abandoned="Too many open spans")
        parent = parent if parent in self.open else None
        context = trace.set_span_in_context(self.open[parent].span) if parent else None
        ids = {}
        for name_, attribute, alias in _IDS:
            value = getattr(event, name_, None)
            if value is not None:
                ids[attribute] = value
                if alias:
                    ids[alias] = value
        attrs = _clean({**ids, "flue.event.start_index": event.event_index, **attributes})
        span = self.tracer.start_span(name, context=context, kind=kind, attributes=attrs, start_time=_ns(event.timestamp))
        self.open[key] = _Open(span, parent, label, started=_ns(event.timestamp))
        if parent:
            self.open[parent].children.add(key)

    def _end(self, key: Key, event: ev.FlueEvent | None, attributes: dict[str, Any] | None = None, *,
             error: tuple[str, str] | None = None, abandoned: str | None = None, at: int | None = None,
             ) -> _Open | None:
        record = self.open.pop(key, None)
        if record is None:
            return None
        at = at or (_ns(event.timestamp) if event is not None else None)
        for child in list(record.children):  # descendants whose closing event never came
            if child in self.open:
                self._end(child, event, abandoned=f"The {_KINDS[key[0]]}")
        if record.parent in self.open:
            self.open[record.parent].children.discard(key)
        span = record.span
        if attributes:
            span.set_attributes(_clean(attributes))
        if event is not None and event.event_index is not None and not abandoned:
            span.set_attribute("flue.event.end_index", event.event_index)
        if abandoned:
            _fail(span, "abandoned", f"{abandoned} ended before this span received its terminal event.", at)
        elif error is not None:
            _fail(span, *error, at)
        span.end(end_time=at)
        return record

    def _innermost(self, event: ev.FlueEvent) -> Any:
        for key in (("turn", event.turn_id), ("op", event.operation_id), ("sub", event.submission_id),
                    ("run", event.run_id)):
            if key[1] and key in self.open:
                return self.open[key].span
        return None

    # -- workflow runs ------------------------------------------------------------------------

    def run_start(self, e: ev.RunStart | ev.RunResume) -> None:
        if not e.run_id:
            return
        resumed = isinstance(e, ev.RunResume)
        self._start(("run", e.run_id), f"flue.workflow {e.workflow_name}", None, e, {
            "flue.workflow.name": e.workflow_name,
            "flue.workflow.recovery_handling": True if resumed else None,
            "flue.workflow.started_at": e.started_at if resumed else None,
            "flue.workflow.payload": None if resumed else self._content(e.payload),
        }, label=e.workflow_name)

    def run_end(self, e: ev.RunEnd) -> None:
        if not e.run_id:
            return
        error = _error_parts(e.error, "Workflow run failed.") if e.is_error else None
        record = self._end(("run", e.run_id), e, {"flue.workflow.duration_ms": e.duration_ms,
                                                  "flue.workflow.result": self._content(e.result)}, error=error)
        if self.instruments is not None and record is not None:
            self.instruments.workflow_duration.record(e.duration_ms / 1000, _clean({
                "flue.workflow.name": record.name, "error.type": error[0] if error else None}))

    # -- durable agent submissions --------------------------------------------------------------

    def submission_admitted(self, e: ev.SubmissionAdmitted) -> None:
        if e.submission_id:
            self._start(("sub", e.submission_id), f"flue.submission {e.agent_name or ''}".rstrip(), None, e, {
                "gen_ai.agent.name": e.agent_name, "flue.agent.name": e.agent_name,
                "flue.submission.input": self._content(e.input),
            })

    def submission_settled(self, e: ev.SubmissionSettled) -> None:
        if e.submission_id:
            error = _error_parts(e.error, "Submission failed.") if e.outcome == "failed" else None
            self._end(("sub", e.submission_id), e, {"flue.submission.outcome": e.outcome,
                                                    "flue.submission.result": self._content(e.result)}, error=error)

    # -- operations ------------------------------------------------------------------------------

    def operation_start(self, e: ev.OperationStart) -> None:
        if not e.operation_id:
            return
        parent: Key | None = self._calling_tool(e)
        for candidate in (("task", e.task_id), ("sub", e.submission_id), ("run", e.run_id)):
            if parent is None and candidate[1] and candidate in self.open:
                parent = candidate
        agent_loop = e.operation_kind in _AGENT_KINDS
        self._start(("op", e.operation_id), f"flue.operation {e.operation_kind}", parent, e, {
            "flue.operation.kind": e.operation_kind,
            "gen_ai.operation.name": "invoke_agent" if agent_loop else None,
            "gen_ai.agent.name": e.agent_name if agent_loop else None,
            "flue.agent.name": e.agent_name,
        })
        if ("op", e.operation_id) in self.open:
            self.open[("op", e.operation_id)].session = (e.run_id or e.instance_id, e.harness, e.session)

    def _calling_tool(self, e: ev.OperationStart) -> Key | None:
        """A session runs one operation at a time, so one that starts while another of its session
        is open was started by that operation's model: the ``task`` tool. Its span is the parent."""
        for key, record in reversed(self.open.items()):
            if key[0] != "tool" or record.name != "task" or record.children:
                continue
            caller = self.open.get(record.parent) if record.parent else None
            if caller is not None and caller.session == (e.run_id or e.instance_id, e.harness, e.session):
                return key
        return None

    def operation(self, e: ev.Operation) -> None:
        if not e.operation_id:
            return
        error = _error_parts(e.error, "Operation failed.") if e.is_error else None
        self._end(("op", e.operation_id), e, {
            "flue.duration_ms": e.duration_ms, **_usage_attributes("flue.operation.usage", e.usage),
            **_gen_ai_usage(e.usage), "flue.operation.result": self._content(e.result),
        }, error=error)
        if self.instruments is not None:
            self.instruments.operation_duration.record(e.duration_ms / 1000, _clean({
                "flue.operation.kind": e.operation_kind, "gen_ai.agent.name": e.agent_name,
                "error.type": error[0] if error else None}))

    # -- model calls -------------------------------------------------------------------------------

    def _turn_parent(self, e: ev.TurnStart) -> Key | None:
        if e.purpose != "agent" and ("compaction", e.operation_id or "") in self.open:
            return ("compaction", e.operation_id or "")
        return ("op", e.operation_id) if e.operation_id else None

    def turn_start(self, e: ev.TurnStart) -> None:
        if e.turn_id:
            self._start(("turn", e.turn_id), "chat", self._turn_parent(e), e,
                        {"gen_ai.operation.name": "chat", "flue.turn.purpose": e.purpose}, SpanKind.CLIENT)

    def turn_request(self, e: ev.TurnRequest) -> None:
        record = self.open.get(("turn", e.turn_id or ""))  # turn_start came first
        if record is None:
            return
        record.span.update_name(f"chat {e.model}")
        record.name = e.model
        record.span.set_attributes(_clean({
            "gen_ai.request.model": e.model, "gen_ai.provider.name": e.provider, "flue.turn.provider_api": e.api,
            "flue.turn.reasoning": e.reasoning, "flue.turn.input": self._content(e.input),
        }))

    def message_end(self, e: ev.MessageEnd) -> None:
        if e.turn_id and e.message.get("role") == "assistant" and ("turn", e.turn_id) in self.open:
            self.open[("turn", e.turn_id)].answered = _ns(e.timestamp)

    def turn(self, e: ev.Turn) -> None:
        """The chat span covers the model call: it ends when the answer was complete, before the
        turn's tool calls (which Flue's ``turn`` event, and its ``durationMs``, include)."""
        record = self.open.get(("turn", e.turn_id or ""))
        error = None
        if e.is_error:  # beta.5's response.error has the wire type; the flat error is the message
            failure = (e.response or {}).get("error")
            error = _error_parts(failure if isinstance(failure, dict) else e.error, "Model call failed.")
        if self.instruments is not None:
            seconds = e.duration_ms / 1000
            if record is not None and record.answered and record.started:
                seconds = max(0.0, (record.answered - record.started) / 1e9)
            self.instruments.turn(e, seconds, error[0] if error else None)
        if record is None:
            return
        if e.model and record.name is None:  # no turn_request came (skipped unless contents are captured)
            record.span.update_name(f"chat {e.model}")
            record.span.set_attributes(_clean({
                "gen_ai.request.model": e.model, "gen_ai.provider.name": e.provider, "flue.turn.provider_api": e.api,
                "flue.turn.reasoning": (e.request or {}).get("reasoningLevel"),
            }))
        usage = e.usage
        self._end(("turn", e.turn_id or ""), e, {
            "gen_ai.response.model": e.model, "gen_ai.response.finish_reasons": [e.stop_reason] if e.stop_reason else None,
            **_gen_ai_usage(usage),
            "flue.usage.total_tokens": usage.total_tokens if usage else None,
            "flue.usage.cost_total": usage.cost.total if usage else None,
            "flue.turn.output": self._content(e.output),
        }, error=error, at=record.answered)

    # -- tool calls, tasks, compaction ----------------------------------------------------------------

    def tool_start(self, e: ev.ToolStart) -> None:
        self._start(("tool", f"{e.operation_id}/{e.tool_call_id}"), f"flue.tool {e.tool_name}",
                    ("op", e.operation_id) if e.operation_id else None, e, {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": e.tool_name,
            "gen_ai.tool.call.id": e.tool_call_id, "gen_ai.tool.type": "function",
            "flue.tool.name": e.tool_name, "flue.tool.call_id": e.tool_call_id,
            "flue.tool.arguments": self._content(e.args),
        }, label=e.tool_name)

    def tool(self, e: ev.ToolEvent) -> None:
        error = None
        if e.is_error:  # the tool's message is the tool's output: content
            error = ("tool_error", self._content(_result_text(e.result)) or "Tool call failed.")
        self._end(("tool", f"{e.operation_id}/{e.tool_call_id}"), e, {"flue.duration_ms": e.duration_ms, "flue.tool.replayed": e.replayed,
                                                 "flue.tool.result": self._content(e.result)}, error=error)
        if self.instruments is not None and not e.replayed:
            self.instruments.tool_duration.record(e.duration_ms / 1000, _clean({
                "gen_ai.tool.name": e.tool_name, "error.type": "tool_error" if e.is_error else None}))

    def task_start(self, e: ev.TaskStart) -> None:
        if e.task_id:
            self._start(("task", e.task_id), f"flue.task {e.agent}" if e.agent else "flue.task",
                        ("op", e.operation_id) if e.operation_id else None, e, {
                "flue.task.agent": e.agent, "flue.task.cwd": e.cwd, "flue.task.prompt": self._content(e.prompt),
            })

    def task(self, e: ev.TaskEvent) -> None:
        if e.task_id:
            error = ("task_error", "Task failed.") if e.is_error else None
            self._end(("task", e.task_id), e, {"flue.duration_ms": e.duration_ms,
                                               "flue.task.result": self._content(e.result)}, error=error)

    def compaction_start(self, e: ev.CompactionStart) -> None:
        self._start(("compaction", e.operation_id or ""), "flue.compaction",
                    ("op", e.operation_id) if e.operation_id else None, e, {
            "flue.compaction.reason": e.reason, "flue.compaction.estimated_tokens": e.estimated_tokens,
        })

    def compaction(self, e: ev.Compaction) -> None:
        error = _error_parts(e.error, "Compaction failed.") if e.is_error else None
        self._end(("compaction", e.operation_id or ""), e, {
            "flue.duration_ms": e.duration_ms, "flue.compaction.messages_before": e.messages_before,
            "flue.compaction.messages_after": e.messages_after, **_usage_attributes("flue.compaction.usage", e.usage),
        }, error=error)

    def log(self, e: ev.Log) -> None:
        span = self._innermost(e)
        if span is not None:
            span.add_event("flue.log", _clean({
                "flue.log.level": e.level, "flue.event.index": e.event_index,
                "flue.log.message": self._content(e.message), "flue.log.attributes": self._content(e.attributes),
            }), timestamp=_ns(e.timestamp))


def _result_text(result: Any) -> Any:
    """The text of a tool result ``{content: [{type: "text", text}]}``."""
    if isinstance(result, dict) and isinstance(result.get("content"), list):
        return "\n".join(str(p.get("text", "")) for p in result["content"] if isinstance(p, dict)) or result
    return result


_HANDLERS: dict[str, Any] = {
    "run_start": Projection.run_start, "run_resume": Projection.run_start, "run_end": Projection.run_end,
    "submission_admitted": Projection.submission_admitted, "submission_settled": Projection.submission_settled,
    "operation_start": Projection.operation_start, "operation": Projection.operation,
    "turn_start": Projection.turn_start, "turn_request": Projection.turn_request, "turn": Projection.turn,
    "message_end": Projection.message_end,
    "tool_start": Projection.tool_start, "tool": Projection.tool,
    "task_start": Projection.task_start, "task": Projection.task,
    "compaction_start": Projection.compaction_start, "compaction": Projection.compaction,
    "log": Projection.log,
}
