"""Events of an operation: order, ids, and delivery to a project's flue_observe plugin."""

from __future__ import annotations

from fixtures.harness.support import make_project, recording_sink

import flue
from flue.events import EventSink
from flue.testing import ScriptedModel, calls, event_types, reply, tool_call


def _script() -> ScriptedModel:
    return ScriptedModel([
        calls(
            tool_call("word_count", {"text": "a b"}, id="c1"),
            tool_call("word_count", {"nope": 1}, id="c2"),
            text="Let me count.",
            thinking="Two calls.",
        ),
        reply("2 words."),
    ])


async def test_operation_events_arrive_in_order_with_ids_and_reach_the_observer_plugin(tmp_path):
    project = make_project(tmp_path)
    recorder = project.pm.get_plugin("recorder")
    sink, events = recording_sink()
    harness = await flue.init(
        "assistant", project=project, providers={"scripted": _script()}, sink=sink, scope="agents/assistant/u1",
        observe=True,
    )
    session = await harness.session("support")

    await session.prompt("Count 'a b'")

    types = event_types(events)
    # Flue's sequence for a prompt in code with a tool turn (flue-reference.md 7.2); the two
    # tool calls run in parallel, so their `tool` events come in completion order.
    assert types == [
        "operation_start", "agent_start", "message_start", "message_end",
        "turn_start", "turn_request", "message_start", "thinking_start", "thinking_delta", "thinking_end",
        "text_delta", "message_end", "tool_start", "tool_start", "tool", "tool", "turn_messages", "turn",
        "turn_start", "turn_request", "message_start", "text_delta", "message_end", "turn_messages", "turn",
        "agent_end", "operation", "idle",
    ]
    assert "".join(e.text for e in events if e.type == "text_delta") == "Let me count.2 words."
    assert "".join(e.delta for e in events if e.type == "thinking_delta") == "Two calls."
    assert next(e for e in events if e.type == "thinking_end").content == "Two calls."
    user = events[2].message
    assert user["role"] == "user" and user["content"] == [{"type": "text", "text": "Count 'a b'"}]
    assert [e.tool_name for e in events if e.type == "tool_start"] == ["word_count", "word_count"]
    results = {e.tool_call_id: e for e in events if e.type == "tool"}
    assert results["c1"].is_error is False and results["c1"].result == {"content": [{"type": "text", "text": "2"}]}
    assert results["c2"].is_error is True
    first_turn = next(e for e in events if e.type == "turn")
    assert first_turn.stop_reason == "toolUse" and first_turn.purpose == "agent"
    assert first_turn.output["content"][0] == {"type": "thinking", "thinking": "Two calls."}
    assert [b["type"] for b in first_turn.output["content"]] == ["thinking", "text", "toolCall", "toolCall"]
    messages = next(e for e in events if e.type == "turn_messages")
    assert [m["role"] for m in messages.tool_results] == ["toolResult", "toolResult"]
    assert {m["toolCallId"]: m["isError"] for m in messages.tool_results} == {"c1": False, "c2": True}
    agent_end = next(e for e in events if e.type == "agent_end")
    assert [m["role"] for m in agent_end.messages] == ["user", "assistant", "toolResult", "toolResult", "assistant"]
    operation = events[-2].wire()
    assert operation["operationKind"] == "prompt" and operation["isError"] is False
    assert operation["result"]["text"] == "2 words." and operation["result"]["model"] == {
        "provider": "scripted", "id": "chat-model"}
    assert operation["usage"] == operation["result"]["usage"]
    assert set(operation["usage"]) == {"input", "output", "cacheRead", "cacheWrite", "totalTokens", "cost"}
    assert operation["usage"]["totalTokens"] == sum(
        e.usage.total_tokens for e in events if e.type == "turn")

    op_ids = {e.operation_id for e in events}
    assert len(op_ids) == 1 and next(iter(op_ids)).startswith("op_")
    assert {(e.harness, e.session, e.agent_name) for e in events} == {("default", "support", "assistant")}
    assert {e.v for e in events} == {3}
    assert [e.event_index for e in events] == list(range(len(events)))  # the root sink numbers them
    turn_starts = [e for e in events if e.type == "turn_start"]
    assert turn_starts[0].turn_id != turn_starts[1].turn_id
    first_turn_id = turn_starts[0].turn_id
    assert events[2].turn_id == first_turn_id  # the user message belongs to the first turn
    assert all(e.turn_id == first_turn_id for e in events if e.type in ("tool_start", "tool"))
    assert all(e.turn_id is None for e in events if e.type in ("operation_start", "operation", "idle"))
    assert all(e.timestamp.endswith("Z") for e in events)

    # The project's plugin (plugins/recorder.py, an async flue_observe) saw the same events, in order.
    assert [e.type for e in recorder.EVENTS] == [e.type for e in events]
    assert recorder.EVENTS[0] is events[0]
    context = recorder.CONTEXTS[-1]
    assert context["project"] is project
    assert context["scope"] == "agents/assistant/u1"
    assert context["operation_id"] == events[0].operation_id and context["session"] == "support"


async def test_observers_can_be_left_to_the_caller_and_failures_are_contained(tmp_path):
    project = make_project(tmp_path)
    recorder = project.pm.get_plugin("recorder")
    # Standalone (no sink): observers are called by the harness.
    harness = await flue.init("assistant", project=project, providers={"scripted": _script()})
    await (await harness.session()).prompt("Count")
    assert [e.type for e in recorder.EVENTS][-2:] == ["operation", "idle"]
    recorder.EVENTS.clear()
    # A caller's sink (a runtime) forwards to observers itself, so the harness does not.
    harness = await flue.init("assistant", project=project, providers={"scripted": _script()}, sink=EventSink())
    await (await harness.session()).prompt("Count")
    assert recorder.EVENTS == []

    # A failing subscriber never breaks the operation.
    sink = EventSink()

    def broken(event):
        raise RuntimeError("observer bug")

    sink.subscribe(broken)
    harness = await flue.init(
        "assistant", project=project, providers={"scripted": _script()}, sink=sink, observe=True
    )
    result = await (await harness.session()).prompt("Count")
    assert result.text == "2 words."
    assert recorder.EVENTS[-1].type == "idle"


async def test_failed_operation_ends_with_an_error_turn_and_operation():
    model = ScriptedModel([])  # no turns: the model call itself fails
    sink, events = recording_sink()
    session = await (await flue.init(flue.create_agent(name="x", model=model), sink=sink)).session()
    try:
        await session.prompt("hello")
    except flue.FlueHarnessError as exc:
        assert "no scripted turn left" in str(exc)
    else:
        raise AssertionError("expected a model call error")
    assert event_types(events) == [
        "operation_start", "agent_start", "message_start", "message_end", "turn_start", "turn_request", "turn",
        "agent_end", "operation", "idle",
    ]
    turn, operation = events[6], events[8]
    assert turn.is_error and turn.stop_reason == "error"
    assert operation.is_error and operation.error["name"] == "ModelCallError"
    assert operation.error["type"] == "operation_failed" and "no scripted turn left" in operation.error["message"]
