"""The tool loop with the in-process scripted model: parallel tools, validation, errors, limits."""

from __future__ import annotations

import asyncio
import json

import pytest
from fixtures.harness.support import make_project, recording_sink

import flue
from flue.harness.errors import ToolNameCollisionError, TurnLimitError, UnknownToolError
from flue.testing import ScriptedModel, calls, reply, tool_call
from flue.tools import Tool, ToolContext, ToolError


def make_tools(log: list[str]):
    @flue.tool
    async def lookup(city: str, ctx: ToolContext) -> str:
        "Look up the weather for a city."
        log.append(f"lookup {city} {ctx.tool_call_id}")
        return f"{city}: sunny"

    @flue.tool
    async def explode(reason: str) -> str:
        "Always fails."
        raise RuntimeError(f"boom: {reason}")

    @flue.tool
    async def refuse(reason: str) -> str:
        "Fails cleanly."
        raise ToolError(f"refused: {reason}")

    return lookup, explode, refuse


async def test_parallel_calls_run_concurrently_and_invalid_arguments_come_back_as_errors():
    in_flight, peak = 0, 0
    both_started = asyncio.Event()

    @flue.tool
    async def slow_add(a: int, b: int) -> str:
        "Add two numbers, slowly."
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 2:
            both_started.set()
        await asyncio.wait_for(both_started.wait(), 2)  # only returns if the calls overlap
        in_flight -= 1
        return str(a + b)

    model = ScriptedModel([
        calls(
            tool_call("slow_add", {"a": 2, "b": 3}, id="ok"),
            tool_call("slow_add", {"a": "two"}, id="bad"),
            tool_call("slow_add", {"a": 1, "b": 1}, id="ok2"),
        ),
        reply("2 + 3 = 5"),
    ])
    agent = flue.create_agent(name="calc", model=model, tools=[slow_add])
    sink, events = recording_sink()
    session = await (await flue.init(agent, sink=sink)).session()

    result = await session.prompt("What is 2 + 3?")

    assert result.text == "2 + 3 = 5"
    assert peak == 2  # the two valid calls overlapped; the invalid one never ran
    tool_msgs = [m for m in model.requests[1].messages if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in tool_msgs] == ["ok", "bad", "ok2"]
    assert tool_msgs[0]["content"] == "5" and tool_msgs[2]["content"] == "2"
    assert tool_msgs[1]["content"].startswith("Error: invalid arguments:")
    assert "a: Input should be a valid integer" in tool_msgs[1]["content"]
    assert "b: Field required" in tool_msgs[1]["content"]
    calls_seen = [e for e in events if e.type == "tool_start"]
    assert [(c.tool_call_id, c.args) for c in calls_seen] == [
        ("ok", {"a": 2, "b": 3}), ("bad", {"a": "two"}), ("ok2", {"a": 1, "b": 1}),
    ]


async def test_exceptions_unknown_tools_and_bad_json_become_error_results():
    log: list[str] = []
    lookup, explode, refuse = make_tools(log)
    model = ScriptedModel([
        calls(
            tool_call("explode", {"reason": "x"}),
            tool_call("refuse", {"reason": "policy"}),
            tool_call("teleport", {}),
            tool_call("lookup", '{"city": "Par'),  # truncated JSON
            tool_call("lookup", {"city": "Oslo"}),
        ),
        reply("Oslo is sunny; the rest failed."),
    ])
    agent = flue.create_agent(name="weather", model=model, tools=[lookup, explode, refuse])
    session = await (await flue.init(agent)).session()

    result = await session.prompt("Weather?")

    assert result.text == "Oslo is sunny; the rest failed."
    outputs = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert outputs[0] == "Error: RuntimeError: boom: x"
    assert outputs[1] == "Error: refused: policy"
    assert outputs[2].startswith("Error: there is no tool named 'teleport'")
    assert "explode, lookup, refuse" in outputs[2]
    assert outputs[3].startswith("Error: the arguments are not valid JSON")
    assert outputs[4] == "Oslo: sunny"
    assert log == ["lookup Oslo call_1_4"]


async def test_turn_limit_stops_a_runaway_loop():
    @flue.tool
    async def again() -> str:
        "Do it again."
        return "again"

    model = ScriptedModel([calls(tool_call("again")) for _ in range(5)])
    agent = flue.create_agent(name="loop", model=model, tools=[again], max_turns=3)
    session = await (await flue.init(agent)).session()

    with pytest.raises(TurnLimitError) as info:
        await session.prompt("Go.")

    assert len(model.requests) == 3
    assert "3 turns" in str(info.value) and "max_turns" in str(info.value)
    assert session.messages == []
    # A call-site limit overrides the agent's.
    model.add(*[calls(tool_call("again")) for _ in range(2)])
    with pytest.raises(TurnLimitError):
        await session.prompt("Go.", max_turns=1)
    assert len(model.requests) == 4


async def test_call_site_tools_and_name_collisions():
    model = ScriptedModel([calls(tool_call("shout", {"text": "hi"})), reply("HI")])

    @flue.tool
    async def shout(text: str) -> str:
        "Upper-case text."
        return text.upper()

    agent = flue.create_agent(name="plain", model=model, tools=[])
    session = await (await flue.init(agent)).session()
    result = await session.prompt("Shout hi", tools=[shout])
    assert result.text == "HI"
    assert [t["function"]["name"] for t in model.requests[0].tools] == ["shout"]
    assert model.requests[1].messages[-1]["content"] == "HI"

    async def run(args, ctx):
        return "x"

    bash_clone = Tool(name="bash", description="not the real bash", parameters={"type": "object"}, execute=run)
    with pytest.raises(ToolNameCollisionError, match="built-in tool"):
        await session.prompt("x", tools=[bash_clone])
    with pytest.raises(ToolNameCollisionError, match="built-in tool"):
        await flue.init(flue.create_agent(name="clash", model=model, tools=[bash_clone]))
    with pytest.raises(ToolNameCollisionError, match="already used"):
        await flue.init(flue.create_agent(name="twice", model=model, tools=[shout]), tools=[shout])


async def test_plugin_tools_by_name_and_unknown_names(tmp_path):
    project = make_project(tmp_path)
    model = ScriptedModel([calls(tool_call("word_count", {"text": "a b c d"})), reply("4 words")])
    harness = await flue.init("assistant", project=project, providers={"scripted": model})
    assert list(harness.tools) == ["word_count"]
    result = await (await harness.session()).prompt("Count 'a b c d'")
    assert result.text == "4 words"
    assert model.requests[1].messages[-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "4"}

    broken = flue.create_agent(name="broken", model=model, tools=["word_count", "no_such_tool"])
    with pytest.raises(UnknownToolError, match="no_such_tool"):
        await flue.init(broken, project=project)


async def test_tool_arguments_are_validated_against_a_plain_json_schema():
    seen: list[dict] = []

    async def execute(args, ctx):
        seen.append(args)
        return json.dumps(args)

    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}},
        "required": ["n"],
        "additionalProperties": False,
    }
    repeat = Tool(name="repeat", description="Repeat n times.", parameters=schema, execute=execute)
    model = ScriptedModel([
        calls(tool_call("repeat", {"n": 0}), tool_call("repeat", {"n": 2, "extra": True}), tool_call("repeat", {"n": 2})),
        reply("done"),
    ])
    session = await (await flue.init(flue.create_agent(name="r", model=model, tools=[repeat]))).session()

    await session.prompt("repeat")

    outputs = [m["content"] for m in model.requests[1].messages if m["role"] == "tool"]
    assert "n: 0 is less than the minimum of 1" in outputs[0]
    assert "Additional properties are not allowed" in outputs[1]
    assert outputs[2] == '{"n": 2}'
    assert seen == [{"n": 2}]


async def test_a_tool_whose_own_work_is_cancelled_is_just_a_failed_call():
    @flue.tool
    async def flaky() -> str:
        "Its inner work gets cancelled."
        inner = asyncio.ensure_future(asyncio.sleep(10))
        inner.cancel()
        return await inner

    model = ScriptedModel([calls(tool_call("flaky")), reply("It failed; moving on.")])
    session = await (await flue.init(flue.create_agent(name="f", model=model, tools=[flaky]))).session()

    result = await session.prompt("try it")

    assert result.text == "It failed; moving on."
    assert model.requests[1].messages[-1]["content"] == "Error: the tool's work was cancelled before it finished"
