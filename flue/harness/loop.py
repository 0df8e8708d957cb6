"""The tool loop: the turns of one operation.

Each turn streams one model call: text and thinking deltas become events as
they arrive; tool-call fragments are assembled per index. When the model asks
for tools, every call is announced (``tool_call`` events, in order), then all
run concurrently in a ``TaskGroup``; each call's arguments are parsed and
validated against the tool's JSON Schema before ``execute``, and a parse or
validation error, a :class:`~flue.tools.ToolError` or any other exception
becomes an error tool result the model can correct. Results go back into the
conversation in call order and the next turn starts. The loop ends when a
turn calls no tools (or when the structured result was accepted, see
``flue.harness.results``); ``max_turns`` model calls without ending raise
:class:`~flue.harness.errors.TurnLimitError`.

Cancellation needs no extra machinery: cancelling the operation's task raises
``CancelledError`` at the stream read (the provider's ``finally`` closes the
HTTP response) or inside the ``TaskGroup`` (which cancels every running tool
and waits for them) before the session turns it into
:class:`~flue.harness.errors.OperationCancelledError`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flue.events import (
    EventSink,
    TextDelta,
    ThinkingDelta,
    ToolCall,
    ToolResult,
    TurnEnd,
    TurnStart,
    Usage,
    UsageEvent,
    monotonic_ms,
)
from flue.harness.errors import FlueHarnessError, ModelCallError, ResultValidationError, TurnLimitError
from flue.harness.results import REMINDER, RESULT_TOOL_NAME, ResultInvalid, ResultSpec
from flue.ids import new_id
from flue.models.base import AssembledToolCall, ModelProvider, ModelRequest, StreamAccumulator, aclose_stream
from flue.tools import Tool, ToolContext, ToolError


@dataclass
class LoopSettings:
    provider: ModelProvider
    provider_id: str
    model: str
    system: str
    tools: dict[str, Tool]
    make_context: Callable[[str], ToolContext]
    result: ResultSpec | None = None
    thinking: str | None = None
    max_turns: int = 50

    @property
    def model_spec(self) -> str:
        return f"{self.provider_id}/{self.model}"


@dataclass
class LoopOutcome:
    text: str = ""
    data: Any = None
    usage: Usage = field(default_factory=Usage)
    turns: int = 0


@dataclass
class _ResultState:
    accepted: bool = False
    data: Any = None
    failures: int = 0
    last_error: str = ""


async def run_loop(
    settings: LoopSettings, history: list[dict[str, Any]], new: list[dict[str, Any]], sink: EventSink
) -> LoopOutcome:
    """Run turns until done, appending the operation's messages to ``new``."""
    outcome = LoopOutcome()
    state = _ResultState()
    last_text = ""
    specs = [t.spec() for t in settings.tools.values()]
    if settings.result is not None:
        specs.append(settings.result.tool_spec())
    system = [{"role": "system", "content": settings.system}] if settings.system else []

    for index in range(settings.max_turns):
        turn_sink = sink.child(turn_id=new_id("turn"))
        await turn_sink.emit(TurnStart(index=index, model=settings.model_spec))
        request = ModelRequest(
            provider=settings.provider_id,
            model=settings.model,
            messages=[*system, *history, *new],
            tools=specs,
            thinking=settings.thinking,  # type: ignore[arg-type]
        )
        acc = await _stream_turn(settings, request, turn_sink)
        outcome.turns += 1
        message = acc.message()
        new.append(message)
        turn_usage = acc.usage or Usage()
        outcome.usage = outcome.usage + turn_usage
        calls = acc.tool_calls
        await turn_sink.emit(
            TurnEnd(index=index, stop_reason=acc.finish_reason, text=acc.text, tool_calls=len(calls), usage=turn_usage)
        )
        await turn_sink.emit(UsageEvent(usage=turn_usage, scope="turn"))
        if acc.text:
            last_text = acc.text
        outcome.text = acc.text or last_text

        if not calls:
            if settings.result is None or state.accepted:
                return outcome
            state.failures += 1
            state.last_error = state.last_error or f"the model answered without calling {RESULT_TOOL_NAME}"
            if state.failures >= settings.result.retries:
                raise ResultValidationError(state.failures, state.last_error)
            new.append({"role": "user", "content": REMINDER})
            continue

        results = await _run_tools(settings, calls, turn_sink, state)
        for call, (output, is_error) in zip(calls, results, strict=True):
            new.append({"role": "tool", "tool_call_id": call.id, "content": f"Error: {output}" if is_error else output})
        if state.accepted:
            outcome.data = state.data
            return outcome
        if settings.result is not None and state.failures >= settings.result.retries:
            raise ResultValidationError(state.failures, state.last_error)
    raise TurnLimitError(settings.max_turns)


async def _stream_turn(settings: LoopSettings, request: ModelRequest, sink: EventSink) -> StreamAccumulator:
    acc = StreamAccumulator()
    stream = settings.provider.stream(request)
    try:
        async for chunk in stream:
            acc.add(chunk)
            if chunk.thinking:
                await sink.emit(ThinkingDelta(delta=chunk.thinking))
            if chunk.text:
                await sink.emit(TextDelta(delta=chunk.text))
    except FlueHarnessError:
        raise
    except Exception as exc:  # a provider object that raised something of its own
        raise ModelCallError(settings.model_spec, exc) from exc
    finally:
        await aclose_stream(stream)
    return acc


async def _run_tools(
    settings: LoopSettings, calls: list[AssembledToolCall], sink: EventSink, state: _ResultState
) -> list[tuple[str, bool]]:
    parsed: list[tuple[Any, str | None]] = []
    for call in calls:
        try:
            args: Any = json.loads(call.arguments) if call.arguments.strip() else {}
            parsed.append((args, None))
        except json.JSONDecodeError as exc:
            args = call.arguments
            parsed.append((None, f"the arguments are not valid JSON ({exc.msg} at position {exc.pos}); send a JSON object"))
        await sink.emit(ToolCall(tool_call_id=call.id, name=call.name, arguments=args))
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(_run_one(settings, call, args, problem, sink, state))
            for call, (args, problem) in zip(calls, parsed, strict=True)
        ]
    return [t.result() for t in tasks]


async def _run_one(
    settings: LoopSettings, call: AssembledToolCall, args: Any, problem: str | None, sink: EventSink,
    state: _ResultState,
) -> tuple[str, bool]:
    started = monotonic_ms()
    output, is_error = await _execute(settings, call, args, problem, state)
    await sink.emit(
        ToolResult(
            tool_call_id=call.id, name=call.name, output=output, is_error=is_error, duration_ms=monotonic_ms() - started
        )
    )
    return output, is_error


async def _execute(
    settings: LoopSettings, call: AssembledToolCall, args: Any, problem: str | None, state: _ResultState
) -> tuple[str, bool]:
    if problem is not None:
        if call.name == RESULT_TOOL_NAME and settings.result is not None:
            state.failures += 1
            state.last_error = problem
        return problem, True
    if call.name == RESULT_TOOL_NAME and settings.result is not None:
        try:
            value = settings.result.validate(args)
        except ResultInvalid as exc:
            state.failures += 1
            state.last_error = str(exc)
            return (
                f"the result does not match the schema:\n{exc}\nCall {RESULT_TOOL_NAME} again with a corrected result.",
                True,
            )
        state.accepted, state.data = True, value
        return "Result accepted.", False
    tool = settings.tools.get(call.name)
    if tool is None:
        available = ", ".join(sorted(settings.tools)) or "none"
        return f"there is no tool named '{call.name}' (available tools: {available})", True
    try:
        clean = tool.validate(args)
        out = await tool.execute(clean, settings.make_context(call.id))
    except ToolError as exc:
        return str(exc), True
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # the operation is being cancelled
        # The tool's own work was cancelled (e.g. an inner timeout): just a failed call.
        return "the tool's work was cancelled before it finished", True
    except Exception as exc:  # any failure is the model's to read and work around
        return f"{type(exc).__name__}: {exc}", True
    return (out if isinstance(out, str) else json.dumps(out, default=str)), False
