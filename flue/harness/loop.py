"""The tool loop: the turns of one operation.

Each turn streams one model call: text and thinking deltas become events as
they arrive; tool-call fragments are assembled per index. When the model asks
for tools, every call is announced (``tool_start`` events, in order), then all
run concurrently in a ``TaskGroup`` (a ``tool`` event as each one finishes); each call's arguments are parsed and
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
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flue.events import (
    AgentEnd,
    AgentStart,
    EventSink,
    Log,
    MessageEnd,
    MessageStart,
    TextDelta,
    ThinkingDelta,
    ThinkingEnd,
    ThinkingStart,
    ToolEvent,
    ToolStart,
    Turn,
    TurnMessages,
    TurnRequest,
    TurnStart,
    monotonic_ms,
)
from flue.harness.compaction import CompactionPolicy, compact
from flue.harness.errors import FlueHarnessError, ModelCallError, ResultValidationError, TurnLimitError
from flue.harness.journal import (
    Journal,
    ModelStep,
    Replay,
    ToolStep,
    TurnState,
    TurnStep,
    calls_of,
    read_replay,
)
from flue.harness.messages import (
    ModelRef,
    agent_message,
    llm_message,
    llm_messages,
    llm_tools,
    stop_reason,
    tool_result,
)
from flue.harness.results import REMINDER, RESULT_TOOL_NAME, ResultInvalid, ResultSpec
from flue.ids import new_id
from flue.models.base import AssembledToolCall, ModelProvider, ModelRequest, StreamAccumulator, aclose_stream
from flue.tools import Tool, ToolContext, ToolError
from flue.usage import ModelPrices, Usage


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
    api: str = "custom"  # the wire protocol, as events name it
    announce_input: bool = True  # message_start/end for the new user messages (not for durable submissions)

    @property
    def model_spec(self) -> str:
        return f"{self.provider_id}/{self.model}"

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.provider_id, self.model, self.api)


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


@dataclass
class _TurnOutput:
    message: dict[str, Any]
    text: str
    usage: Usage
    finish: str | None
    calls: list[AssembledToolCall]


async def run_loop(
    settings: LoopSettings, history: list[dict[str, Any]], new: list[dict[str, Any]], sink: EventSink
) -> LoopOutcome:
    """Run turns until done, appending the operation's messages to ``new``.

    Emits ``agent_start`` ... ``agent_end`` around the turns (``agent_end`` also
    when a turn fails). With ``settings.compaction``, ``history`` (and ``new``)
    may be rewritten in place (see ``flue.harness.compaction``): pass a copy of
    what must stay as it is."""
    await sink.emit(AgentStart())
    errors: set[str] = set()  # tool call ids whose result is an error (for the events' toolResult messages)
    try:
        return await _turns(settings, history, new, sink, errors)
    finally:
        await _emit_quietly(sink, AgentEnd(messages=[agent_message(m, model=settings.ref, errors=errors)
                                                     for m in new]))


async def _turns(
    settings: LoopSettings, history: list[dict[str, Any]], new: list[dict[str, Any]], sink: EventSink,
    errors: set[str],
) -> LoopOutcome:
    outcome = LoopOutcome()
    state = _ResultState()
    specs = [t.spec() for t in settings.tools.values()]
    if settings.result is not None:
        specs.append(settings.result.tool_spec())
    system = [{"role": "system", "content": settings.system}] if settings.system else []
    journal = settings.journal
    replay = read_replay(journal.entries) if journal is not None else Replay()
    turn_id = new_id("turn")
    if settings.announce_input and replay.empty:
        for message in new:
            await sink.emit(MessageStart(message=agent_message(message), turn_id=turn_id))
            await sink.emit(MessageEnd(message=agent_message(message), turn_id=turn_id))
    if not replay.empty:
        if await _restore(settings, replay, new, outcome, state, sink):
            return outcome

    for index in range(len(replay.turns), settings.max_turns):
        if settings.compaction is not None:
            spent = await compact(settings.compaction, settings.provider, settings.ref, settings.system, history,
                                  new, sink, settings.prices)
            if spent is not None:
                outcome.usage = outcome.usage + spent
        turn_sink = sink.child(turn_id=turn_id)
        turn_id = new_id("turn")  # the next turn's
        started = monotonic_ms()
        await turn_sink.emit(TurnStart())
        partial = replay.partial if replay.partial is not None and replay.partial.index == index else None
        if partial is not None:  # the model answered before the crash: reuse the answer
            out = _TurnOutput(partial.message, partial.text, partial.usage, partial.stop_reason, partial.calls)
            await turn_sink.emit(MessageStart(message=agent_message(out.message, model=settings.ref)))
        else:
            messages = [*system, *history, *new]
            request = ModelRequest(
                provider=settings.provider_id,
                model=settings.model,
                messages=messages,
                tools=specs,
                thinking=settings.thinking,  # type: ignore[arg-type]
            )
            if turn_sink.listens_for("turn_request"):
                await turn_sink.emit(_turn_request(settings, messages, specs, "agent"))
            try:
                out = await _stream_turn(settings, request, turn_sink)
            except Exception as exc:
                await _emit_quietly(turn_sink, _failed_turn(settings, started, exc))
                raise
            if settings.prices is not None:
                out.usage = settings.prices.price(out.usage)
            if out.calls:  # without tools the turn's own entry follows at once
                await _record(journal, ModelStep(index=index, message=out.message, text=out.text, usage=out.usage,
                                                 stop_reason=out.finish))
        stop = stop_reason(out.finish, has_calls=bool(out.calls))
        await turn_sink.emit(MessageEnd(message=agent_message(out.message, model=settings.ref, usage=out.usage,
                                                              stop=stop)))
        mark = len(new)
        new.append(out.message)
        outcome.turns += 1
        outcome.usage = outcome.usage + out.usage
        outcome.text = out.text or outcome.text

        done = False
        if not out.calls:
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
            results = await _run_tools(settings, out.calls, turn_sink, state, recorded, journal, index)
            for call, (output, is_error) in zip(out.calls, results, strict=True):
                if is_error:
                    errors.add(call.id)
                new.append({"role": "tool", "tool_call_id": call.id, "content": f"Error: {output}" if is_error else output})
            if state.accepted:
                outcome.data = state.data
                done = True
            elif settings.result is not None and state.failures >= settings.result.retries:
                raise ResultValidationError(state.failures, state.last_error)
        await _end_turn(settings, turn_sink, new, mark, out, stop, started, errors)
        await _record(journal, TurnStep(
            index=index, messages=new[mark:], done=done, text=outcome.text, usage=out.usage,
            state=TurnState(accepted=state.accepted, failures=state.failures, last_error=state.last_error),
        ))
        if done:
            return outcome
    raise TurnLimitError(settings.max_turns)


def _turn_request(settings: LoopSettings, messages: list[dict[str, Any]], specs: list[dict[str, Any]],
                  purpose: str) -> TurnRequest:
    """The whole model input (for observers; built only when one listens)."""
    system = next((m.get("content") for m in messages if m.get("role") == "system"), None)
    rest = [m for m in messages if m.get("role") != "system"]
    tools = llm_tools(specs)
    data: dict[str, Any] = {"messages": llm_messages(rest)}
    if system:
        data["systemPrompt"] = system
    if tools:
        data["tools"] = tools
    info = _request_info(settings)
    return TurnRequest(purpose=purpose, model=settings.model, provider=settings.provider_id,  # type: ignore[arg-type]
                       api=settings.api, input=data, reasoning=settings.thinking,
                       request={**info, "input": data})


def _request_info(settings: LoopSettings) -> dict[str, Any]:
    """Flue's ``ModelRequestInfo`` (beta.5's ``turn.request``)."""
    info: dict[str, Any] = {"providerId": settings.provider_id, "providerName": settings.provider_id,
                            "requestedModel": settings.model, "api": settings.api}
    if settings.thinking:
        info["reasoningLevel"] = settings.thinking
    return info


async def _end_turn(
    settings: LoopSettings, sink: EventSink, new: list[dict[str, Any]], mark: int, out: _TurnOutput, stop: str,
    started: float, errors: set[str],
) -> None:
    """``turn_messages`` then ``turn``: what the turn added, and its summary."""
    message = agent_message(out.message, model=settings.ref, usage=out.usage, stop=stop)
    names = {c.id: c.name for c in out.calls}
    results = [agent_message(m, tool_names=names, errors=errors) for m in new[mark + 1:] if m.get("role") == "tool"]
    await sink.emit(TurnMessages(message=message, tool_results=results))
    output = llm_message(out.message)
    await sink.emit(Turn(
        duration_ms=round(monotonic_ms() - started, 3), model=settings.model, provider=settings.provider_id,
        api=settings.api, output=output, usage=out.usage, stop_reason=stop, is_error=False,
        request=_request_info(settings),
        response={"output": output, "usage": out.usage.wire(), "finishReason": stop},
    ))


def _failed_turn(settings: LoopSettings, started: float, exc: BaseException) -> Turn:
    message = str(exc) or type(exc).__name__
    return Turn(
        duration_ms=round(monotonic_ms() - started, 3), model=settings.model, provider=settings.provider_id,
        api=settings.api, stop_reason="error", is_error=True, error=message, request=_request_info(settings),
        response={"finishReason": "error", "error": {"type": getattr(exc, "error_type", "operation_failed"),
                                                      "name": type(exc).__name__, "message": message}},
    )


async def _record(journal: Journal | None, entry: ModelStep | ToolStep | TurnStep) -> None:
    if journal is not None:
        await journal.record(entry.wire())


async def _emit_quietly(sink: EventSink, event: Any) -> None:
    """Emit while unwinding (cancellation, errors): never mask the original exception."""
    with contextlib.suppress(Exception):
        await sink.emit(event)


async def _restore(
    settings: LoopSettings, replay: Replay, new: list[dict[str, Any]], outcome: LoopOutcome,
    state: _ResultState, sink: EventSink,
) -> bool:
    """Put the recorded turns back into the conversation; True when the operation had already finished."""
    await sink.emit(Log(level="info", message="resumed from the journal of an earlier attempt", attributes={
        "turns": len(replay.turns), "toolResults": replay.tool_results, "partialTurn": replay.partial is not None,
    }))
    done = False
    for turn in replay.turns:
        messages = list(turn.messages)
        new.extend(messages)
        outcome.turns += 1
        outcome.usage = outcome.usage + turn.usage
        outcome.text = turn.text or outcome.text
        state.failures = turn.state.failures
        state.last_error = turn.state.last_error or ""
        done = turn.done
        if turn.state.accepted and settings.result is not None:
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


async def _stream_turn(settings: LoopSettings, request: ModelRequest, sink: EventSink) -> _TurnOutput:
    """Stream one model call: ``message_start`` at the first chunk, thinking and text deltas as they come."""
    acc = StreamAccumulator()
    stream = settings.provider.stream(request)
    started = thinking = False
    try:
        async for chunk in stream:
            if not started:
                started = True
                await sink.emit(MessageStart(message=agent_message({"role": "assistant", "content": None},
                                                                   model=settings.ref)))
            acc.add(chunk)
            if chunk.thinking:
                if not thinking:
                    thinking = True
                    await sink.emit(ThinkingStart())
                await sink.emit(ThinkingDelta(delta=chunk.thinking))
            if thinking and (chunk.text or chunk.tool_calls):
                thinking = False
                await sink.emit(ThinkingEnd(content=acc.thinking))
            if chunk.text:
                await sink.emit(TextDelta(text=chunk.text))
        if thinking:
            await sink.emit(ThinkingEnd(content=acc.thinking))
    except FlueHarnessError:
        raise
    except Exception as exc:  # a provider object that raised something of its own
        raise ModelCallError(settings.model_spec, exc) from exc
    finally:
        await aclose_stream(stream)
    if not started:  # an empty answer still is a message
        await sink.emit(MessageStart(message=agent_message({"role": "assistant", "content": None}, model=settings.ref)))
    return _TurnOutput(acc.message(), acc.text, acc.usage or Usage(), acc.finish_reason, acc.tool_calls)


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
        await sink.emit(ToolStart(tool_name=call.name, tool_call_id=call.id, args=args))
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
        await _record(journal, ToolStep(index=index, tool_call_id=call.id, output=output, is_error=is_error))
    await sink.emit(
        ToolEvent(
            tool_name=call.name, tool_call_id=call.id, is_error=is_error, result=tool_result(output),
            duration_ms=round(monotonic_ms() - started, 3), replayed=replayed or None,
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
