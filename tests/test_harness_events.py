"""Events of an operation: order, ids, and delivery to a project's flue_observe plugin."""

from __future__ import annotations

from fixtures.harness.support import make_project, recording_sink

import flue
from flue.events import EventSink
from flue.testing import ScriptedModel, calls, reply, tool_call


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

    types = [e.type for e in events]
    assert types[0] == "operation_start" and types[-1] == "operation_end"
    first_turn = types[: types.index("turn_start", types.index("turn_start") + 1)]
    assert first_turn[:2] == ["operation_start", "turn_start"]
    # Deltas stream inside the turn, thinking before text (as the model produced them).
    assert first_turn.index("thinking_delta") < first_turn.index("text_delta") < first_turn.index("turn_end")
    assert first_turn[first_turn.index("turn_end"):] == [
        "turn_end", "usage", "tool_call", "tool_call", "tool_result", "tool_result",
    ]
    assert types[-5:] == ["turn_end", "usage", "usage", "usage", "operation_end"]
    assert [e.scope for e in events if e.type == "usage"] == ["turn", "turn", "operation", "session"]
    assert "".join(e.delta for e in events if e.type == "text_delta") == "Let me count.2 words."
    assert "".join(e.delta for e in events if e.type == "thinking_delta") == "Two calls."

    op_ids = {e.operation_id for e in events}
    assert len(op_ids) == 1 and next(iter(op_ids)).startswith("op_")
    assert {(e.harness, e.session, e.agent) for e in events} == {("default", "support", "assistant")}
    turn_starts = [e for e in events if e.type == "turn_start"]
    assert [t.index for t in turn_starts] == [0, 1]
    assert turn_starts[0].turn_id != turn_starts[1].turn_id
    first_turn_id = turn_starts[0].turn_id
    assert all(e.turn_id == first_turn_id for e in events if e.type in ("tool_call", "tool_result"))
    assert all(e.turn_id is None for e in events if e.type in ("operation_start", "operation_end"))
    assert all(e.timestamp.endswith("Z") for e in events)
    wire = events[-1].wire()
    assert wire["operationId"] == events[0].operation_id and wire["result"]["text"] == "2 words."

    # The project's plugin (plugins/recorder.py, an async flue_observe) saw the same events, in order.
    assert [e.type for e in recorder.EVENTS] == types
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
    assert [e.type for e in recorder.EVENTS][-1] == "operation_end"
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
    assert recorder.EVENTS[-1].type == "operation_end"


async def test_failed_operation_emits_error_and_operation_end():
    model = ScriptedModel([])  # no turns: the model call itself fails
    sink, events = recording_sink()
    session = await (await flue.init(flue.create_agent(name="x", model=model), sink=sink)).session()
    try:
        await session.prompt("hello")
    except flue.FlueHarnessError as exc:
        assert "no scripted turn left" in str(exc)
    else:
        raise AssertionError("expected a model call error")
    assert [e.type for e in events] == ["operation_start", "turn_start", "error", "operation_end"]
    assert events[-1].is_error and events[-1].error["type"] == "ModelCallError"
