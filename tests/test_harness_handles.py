"""Call handles: prompt/skill/task/shell return an awaitable, abortable handle (Flue's CallHandle)."""

from __future__ import annotations

import asyncio

import pytest
from fixtures.harness.support import recording_sink

import flue
from flue.testing import ScriptedModel, calls, reply, tool_call


def slow_tool(started: asyncio.Event, seen: list[tuple[bool, object]]) -> flue.Tool:
    @flue.tool
    async def slow(ctx: flue.ToolContext) -> str:
        "Takes a long time."
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            seen.append((ctx.signal.aborted, ctx.signal.reason))
        return "never"

    return slow


async def test_abort_a_running_prompt_with_a_slow_tool():
    started, seen = asyncio.Event(), []
    model = ScriptedModel([reply("first answer"), calls(tool_call("slow", id="s")), reply("after the abort")])
    sink, events = recording_sink()
    agent = flue.create_agent(name="slowpoke", model=model, tools=[slow_tool(started, seen)])
    session = await (await flue.init(agent, sink=sink)).session()
    await session.prompt("warm up")
    before = session.messages

    handle = session.prompt("do the slow thing")
    await asyncio.wait_for(started.wait(), 5)
    handle.abort("the user went away")
    with pytest.raises(flue.OperationCancelledError) as info:
        await asyncio.wait_for(handle, 5)

    assert info.value.reason == "the user went away" and "the user went away" in str(info.value)
    assert seen == [(True, "the user went away")]  # the tool saw the signal, with the reason
    assert handle.signal.aborted and handle.done()
    assert session.messages == before  # nothing of the aborted prompt was recorded
    end = [e for e in events if e.type == "operation"][-1]
    assert end.is_error and end.error["type"] == "operation_cancelled"
    assert [e.type for e in events][-1] == "idle"
    with pytest.raises(flue.OperationCancelledError):  # a handle may be awaited again
        await handle
    # the session goes on
    assert (await session.prompt("still there?")).text == "after the abort"
    assert len(session.messages) == len(before) + 2


async def test_a_signal_passed_at_call_time_aborts_the_call():
    started, seen = asyncio.Event(), []
    model = ScriptedModel([calls(tool_call("slow", id="s")), reply("unused")])
    agent = flue.create_agent(name="signalled", model=model, tools=[slow_tool(started, seen)])
    session = await (await flue.init(agent)).session()

    stop = asyncio.Event()
    handle = session.prompt("go", signal=stop)
    await asyncio.wait_for(started.wait(), 5)
    stop.set()
    with pytest.raises(flue.OperationCancelledError):
        await asyncio.wait_for(handle, 5)
    assert seen and seen[0][0] is True
    assert session.messages == []


async def test_an_already_fired_signal_aborts_before_the_operation_starts():
    model = ScriptedModel([reply("never sent")])
    sink, events = recording_sink()
    session = await (await flue.init(flue.create_agent(name="pre", model=model), sink=sink)).session()
    signal = flue.AbortSignal()
    signal.abort("not today")

    with pytest.raises(flue.OperationCancelledError) as info:
        await session.prompt("hello", signal=signal)
    assert info.value.reason == "not today" and info.value.operation_id is None
    assert model.requests == [] and [e for e in events if e.type == "operation_start"] == []


async def test_abort_after_completion_changes_nothing_and_a_handle_is_a_coroutine():
    model = ScriptedModel([reply("one"), reply("two")])
    session = await (await flue.init(flue.create_agent(name="done", model=model))).session()
    handle = session.prompt("first")
    assert asyncio.iscoroutine(handle)  # create_task / wait_for / gather take it
    first = await handle
    handle.abort("too late")
    assert (await handle).text == first.text == "one"
    assert not handle.signal.aborted
    both = await asyncio.gather(asyncio.create_task(session.prompt("second")))
    assert both[0].text == "two"


async def test_aborting_a_task_stops_the_child_and_its_tools():
    started, seen = asyncio.Event(), []
    model = ScriptedModel([calls(tool_call("slow", id="s")), reply("unused")])
    agent = flue.create_agent(name="parent", model=model, tools=[slow_tool(started, seen)])
    session = await (await flue.init(agent)).session()

    handle = session.task("delegate the slow thing")
    await asyncio.wait_for(started.wait(), 5)
    handle.abort("stop delegating")
    with pytest.raises(flue.OperationCancelledError) as info:
        await asyncio.wait_for(handle, 5)
    assert info.value.kind == "task" and info.value.reason == "stop delegating"
    assert seen == [(True, "stop delegating")]  # the child's tool got the parent's signal


async def test_shell_returns_a_handle_on_the_session_and_the_harness():
    pytest.importorskip("bashkit")
    harness = await flue.init(flue.create_agent(name="sh", model=False, tools=[]))
    out = harness.shell("echo out-of-band")
    assert hasattr(out, "abort")
    assert (await out).stdout.strip() == "out-of-band"
    session = await harness.session()
    assert (await session.shell("echo in-band")).exit_code == 0
    assert "in-band" in session.messages[-1]["content"]


async def test_deleting_a_session_stops_its_running_operation():
    model = ScriptedModel([reply("kept"), reply("never", hang=True), reply("fresh")])
    harness = await flue.init(flue.create_agent(name="del", model=model, tools=[]))
    session = await harness.session("notes")
    await session.prompt("first")
    assert await harness.store.load(harness.storage_key("notes")) is not None

    model.started.clear()
    handle = session.prompt("this one hangs")
    await asyncio.wait_for(model.started.wait(), 5)  # it is streaming
    await session.delete()
    with pytest.raises(flue.SessionDeletedError, match="session 'notes'"):
        await asyncio.wait_for(handle, 5)
    assert await harness.store.load(harness.storage_key("notes")) is None  # nothing wrote it back
    with pytest.raises(flue.SessionDeletedError):
        await session.prompt("on the deleted object")
    again = await harness.session("notes")
    assert again is not session and again.messages == []
    assert (await again.prompt("new start")).text == "fresh"
