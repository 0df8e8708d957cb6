"""Cancelling an operation stops the model stream and running tools and raises OperationCancelledError."""

from __future__ import annotations

import asyncio

import pytest
from fixtures.harness.support import recording_sink

import flue
from flue.harness.errors import OperationCancelledError
from flue.testing import ScriptedModel, calls, reply, tool_call


async def test_cancel_during_the_model_stream():
    model = ScriptedModel([reply("Hello", hang=True), reply("after")])
    sink, events = recording_sink()
    session = await (await flue.init(flue.create_agent(name="slow", model=model), sink=sink)).session()

    task = asyncio.create_task(session.prompt("hi"))
    await asyncio.wait_for(model.started.wait(), 5)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(OperationCancelledError) as info:
        await task

    assert isinstance(info.value, asyncio.CancelledError)  # asyncio semantics are kept
    assert info.value.kind == "prompt" and info.value.session == "default"
    assert model.cancelled == 1  # the stream was closed before it finished
    assert [e.type for e in events][-2:] == ["operation", "idle"]
    assert events[-2].is_error and events[-2].error["type"] == "operation_cancelled"
    assert session.messages == []
    # The session is usable afterwards.
    assert (await session.prompt("again")).text == "after"
    assert [m["content"] for m in session.messages] == ["again", "after"]


async def test_cancel_stops_a_running_tool():
    tool_started = asyncio.Event()
    tool_cancelled = asyncio.Event()
    fast_done = asyncio.Event()

    @flue.tool
    async def wait_forever() -> str:
        "Waits for something that never happens."
        tool_started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            tool_cancelled.set()
            raise
        return "never"

    @flue.tool
    async def quick() -> str:
        "Returns at once."
        fast_done.set()
        return "quick"

    model = ScriptedModel([calls(tool_call("wait_forever"), tool_call("quick")), reply("unused")])
    sink, events = recording_sink()
    agent = flue.create_agent(name="tools", model=model, tools=[wait_forever, quick])
    session = await (await flue.init(agent, sink=sink)).session()

    task = asyncio.create_task(session.prompt("go"))
    await asyncio.wait_for(tool_started.wait(), 5)
    await asyncio.wait_for(fast_done.wait(), 5)
    task.cancel()
    with pytest.raises(OperationCancelledError, match="running tools were stopped"):
        await asyncio.wait_for(task, 5)

    assert tool_cancelled.is_set()
    assert len(model.requests) == 1  # no further turn after the cancel
    results = [e.tool_name for e in events if e.type == "tool"]
    assert results == ["quick"]
    end = events[-2]
    assert end.type == "operation" and end.is_error and events[-1].type == "idle"
    assert end.error == {"name": "OperationCancelledError", "type": "operation_cancelled", "message": end.error["message"]}
    assert session.messages == []
