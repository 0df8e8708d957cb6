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

With a :class:`~flue.harness.journal.Journal` (durable agent submissions)
each model answer, tool result and finished turn is recorded as it completes,
and a recovering attempt replays what an earlier one recorded instead of
repeating it (see ``flue.harness.journal`` for exactly what may run twice).

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
    OperationResumed,
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
from flue.harness.compaction import CompactionPolicy, compact
from flue.harness.errors import FlueHarnessError, ModelCallError, ResultValidationError, TurnLimitError
from flue.harness.journal import Journal, Replay, calls_of, read_replay
from flue.harness.results import REMINDER, RESULT_TOOL_NAME, ResultInvalid, ResultSpec
from flue.ids import new_id
from flue.models.base import AssembledToolCall, ModelProvider, ModelRequest, StreamAccumulator, aclose_stream
from flue.tools import Tool, ToolContext, ToolError
from flue.usage import ModelPrices


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
    journal: Journal | None = None  # durable submissions: record steps, replay an earlier attempt's
    compaction: CompactionPolicy | None = None  # summarize old messages before the window fills
    prices: ModelPrices | None = None  # per million tokens: turns' usage is priced with them

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
    """Run turns until done, appending the operation's messages to ``new``.

    With ``settings.compaction``, ``history`` (and ``new``) may be rewritten in place
    (see ``flue.harness.compaction``): pass a copy of what must stay as it is."""
    outcome = LoopOutcome()
    state = _ResultState()
    specs = [t.spec() for t in settings.tools.values()]
    if settings.result is not None:
        specs.append(settings.result.tool_spec())
    system = [{"role": "system", "content": settings.system}] if settings.system else []
    journal = settings.journal
    replay = read_replay(journal.entries) if journal is not None else Replay()
    if not replay.empty:
        if await _restore(settings, replay, new, outcome, state, sink):
            return outcome

    for index in range(len(replay.turns), settings.max_turns):
        if settings.compaction is not None:
            await compact(settings.compaction, settings.provider, settings.provider_id, settings.model,
                          settings.system, history, new, sink)
        turn_sink = sink.child(turn_id=new_id("turn"))
        await turn_sink.emit(TurnStart(index=index, model=settings.model_spec))
        partial = replay.partial if replay.partial is not None and replay.partial.index == index else None
        if partial is not None:  # the model answered before the crash: reuse the answer
            message, text, turn_usage, stop, calls = (
                partial.message, partial.text, partial.usage, partial.stop_reason, partial.calls
            )
        else:
            request = ModelRequest(
                provider=settings.provider_id,
                model=settings.model,
                messages=[*system, *history, *new],
                tools=specs,
                thinking=settings.thinking,  # type: ignore[arg-type]
            )
            acc = await _stream_turn(settings, request, turn_sink)
            message, text, turn_usage, stop, calls = (
                acc.message(), acc.text, acc.usage or Usage(), acc.finish_reason, acc.tool_calls
            )
            if settings.prices is not None:
                turn_usage = settings.prices.price(turn_usage)
            if calls:  # without tools the turn's own entry follows at once
                await _record(journal, {
                    "type": "model", "index": index, "message": message, "text": text,
                    "usage": turn_usage.model_dump(by_alias=True), "stopReason": stop,
                })
        mark = len(new)
        new.append(message)
        outcome.turns += 1
        outcome.usage = outcome.usage + turn_usage
        await turn_sink.emit(TurnEnd(index=index, stop_reason=stop, text=text, tool_calls=len(calls), usage=turn_usage))
        await turn_sink.emit(UsageEvent(usage=turn_usage, scope="turn"))
        outcome.text = text or outcome.text

        done = False
        if not calls:
            if settings.result is None or state.accepted:
                done = True
            else:
                state.failures += 1
                state.last_error = state.last_error or f"the model answered without calling {RESULT_TOOL_NAME}"
                if state.failures >= settings.result.retries:
                    raise ResultValidationError(state.failures, state.last_error)
                new.append({"role": "user", "content": REMINDER})
        else:
            recorded = partial.results if partial is not None else {}
            results = await _run_tools(settings, calls, turn_sink, state, recorded, journal, index)
            for call, (output, is_error) in zip(calls, results, strict=True):
                new.append({"role": "tool", "tool_call_id": call.id, "content": f"Error: {output}" if is_error else output})
            if state.accepted:
                outcome.data = state.data
                done = True
            elif settings.result is not None and state.failures >= settings.result.retries:
                raise ResultValidationError(state.failures, state.last_error)
        await _record(journal, {
            "type": "turn", "index": index, "messages": new[mark:], "done": done, "text": outcome.text,
            "usage": turn_usage.model_dump(by_alias=True),
            "state": {"accepted": state.accepted, "failures": state.failures, "lastError": state.last_error},
        })
        if done:
            return outcome
    raise TurnLimitError(settings.max_turns)


async def _record(journal: Journal | None, entry: dict[str, Any]) -> None:
    if journal is not None:
        await journal.record(entry)


async def _restore(
    settings: LoopSettings, replay: Replay, new: list[dict[str, Any]], outcome: LoopOutcome,
    state: _ResultState, sink: EventSink,
) -> bool:
    """Put the recorded turns back into the conversation; True when the operation had already finished."""
    await sink.emit(OperationResumed(turns=len(replay.turns), tool_results=replay.tool_results,
                                     partial_turn=replay.partial is not None))
    done = False
    for turn in replay.turns:
        messages = list(turn.get("messages") or [])
        new.extend(messages)
        outcome.turns += 1
        outcome.usage = outcome.usage + Usage.model_validate(turn.get("usage") or {})
        outcome.text = str(turn.get("text") or outcome.text)
        recorded = turn.get("state") or {}
        state.failures = int(recorded.get("failures", 0))
        state.last_error = str(recorded.get("lastError") or "")
        done = bool(turn.get("done"))
        if recorded.get("accepted") and settings.result is not None:
            state.accepted, state.data = True, _accepted_result(settings.result, messages)
    if done:
        outcome.data = state.data
    return done


def _accepted_result(spec: ResultSpec, messages: list[dict[str, Any]]) -> Any:
    """Validate the recorded result call again (the value may be a pydantic model, not JSON)."""
    for message in messages:
        for call in calls_of(message):
            if call.name != RESULT_TOOL_NAME:
                continue
            try:
                return spec.validate(json.loads(call.arguments) if call.arguments.strip() else {})
            except (ResultInvalid, json.JSONDecodeError):
                continue
    return None


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
    settings: LoopSettings, calls: list[AssembledToolCall], sink: EventSink, state: _ResultState,
    recorded: dict[str, tuple[str, bool]], journal: Journal | None, index: int,
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
            group.create_task(_run_one(settings, call, args, problem, sink, state, recorded, journal, index))
            for call, (args, problem) in zip(calls, parsed, strict=True)
        ]
    return [t.result() for t in tasks]


async def _run_one(
    settings: LoopSettings, call: AssembledToolCall, args: Any, problem: str | None, sink: EventSink,
    state: _ResultState, recorded: dict[str, tuple[str, bool]], journal: Journal | None, index: int,
) -> tuple[str, bool]:
    started = monotonic_ms()
    # A result recorded by an earlier attempt is replayed, not run again. The structured-result
    # call is pure validation, so it is simply evaluated again (that restores the accepted value).
    replayed = call.id in recorded and call.name != RESULT_TOOL_NAME
    if replayed:
        output, is_error = recorded[call.id]
    else:
        output, is_error = await _execute(settings, call, args, problem, state)
        await _record(journal, {"type": "tool", "index": index, "toolCallId": call.id, "output": output,
                                "isError": is_error})
    await sink.emit(
        ToolResult(
            tool_call_id=call.id, name=call.name, output=output, is_error=is_error,
            duration_ms=monotonic_ms() - started, replayed=replayed or None,
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
