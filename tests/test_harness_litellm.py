"""The harness through both model paths, against the scripted model server: Flue's native
clients and litellm (``via: litellm``), the same behaviour expected of each."""

from __future__ import annotations

import asyncio
import json

import pytest
from fixtures.harness.support import make_project, recording_sink
from pydantic import BaseModel

import flue
from flue.harness.errors import ModelAuthError, ModelCallError, OperationCancelledError
from flue.testing import ScriptedTurn, calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]


@pytest.fixture(params=["native", "litellm"])
def route(request) -> dict:
    """Registration keys for the path under test (the scripted models are declared reasoning
    ones, so the native client sends them the thinking level, as litellm does)."""
    return {"via": "litellm"} if request.param == "litellm" else {"reasoning": True}


async def test_markdown_agent_prompts_over_http_and_sends_history(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    first_turn, second_turn = reply("Hello! How can I help?"), reply("You greeted me.")
    server.add(first_turn, second_turn)
    project = make_project(tmp_path, base_url=server.url, provider=route)

    harness = await flue.init("assistant", project=project)
    session = await harness.session()
    first = await session.prompt("Hello?")
    second = await session.prompt("What did I just do?")

    assert first.text == "Hello! How can I help?"
    assert second.text == "You greeted me."
    body1, body2 = server.requests
    # The upstream model name is the part after 'scripted/'.
    assert body1["model"] == "chat-model"
    assert body1["stream"] is True and body1["stream_options"] == {"include_usage": True}
    assert server.records[0].headers.get("x-team") == "core"
    assert [t["function"]["name"] for t in body1["tools"]] == ["word_count"]
    system = body1["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You are a concise assistant.")
    assert "summarize: Summarize a topic" in system["content"]
    assert body1["messages"][1:] == [{"role": "user", "content": "Hello?"}]
    # The second request carries the first exchange as history.
    assert body2["messages"][0] == system
    assert body2["messages"][1:] == [
        {"role": "user", "content": "Hello?"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What did I just do?"},
    ]
    # Usage comes from the server's final usage chunk, per operation and summed per session.
    assert first.usage == first_turn.usage_for(body1["messages"])
    assert second.usage == second_turn.usage_for(body2["messages"])
    assert session.usage == first.usage + second.usage
    stored = await harness.store.load(session.key)
    assert stored is not None and stored.messages == body2["messages"][1:] + [
        {"role": "assistant", "content": "You greeted me."}
    ]


async def test_parallel_tool_calls_with_invalid_arguments_over_http(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    server.add(
        calls(
            tool_call("word_count", {"text": "one two three"}, id="call_ok"),
            tool_call("word_count", {"txt": 42}, id="call_bad"),
            text="Counting.",
        ),
        reply("The text has 3 words."),
    )
    project = make_project(tmp_path, base_url=server.url, provider=route)
    sink, events = recording_sink()
    harness = await flue.init("assistant", project=project, sink=sink)
    session = await harness.session()

    result = await session.prompt("How many words in 'one two three'?")

    assert result.text == "The text has 3 words."
    assert result.turns == 2
    # The fragments of both calls were reassembled and answered in call order.
    tool_messages = server.requests[1]["messages"][-2:]
    assert tool_messages[0] == {"role": "tool", "tool_call_id": "call_ok", "content": "3"}
    assert tool_messages[1]["tool_call_id"] == "call_bad"
    assert tool_messages[1]["content"].startswith("Error: invalid arguments")
    assert "text: Field required" in tool_messages[1]["content"]
    assistant = server.requests[1]["messages"][-3]
    assert [json.loads(c["function"]["arguments"]) for c in assistant["tool_calls"]] == [
        {"text": "one two three"},
        {"txt": 42},
    ]
    results = {e.tool_call_id: e for e in events if e.type == "tool"}
    assert results["call_ok"].is_error is False and results["call_ok"].result["content"][0]["text"] == "3"
    assert results["call_bad"].is_error is True


async def test_structured_result_over_http(tmp_path, scripted_model_server, route):
    class Verdict(BaseModel):
        label: str
        confidence: float

    server: ScriptedModelServer = scripted_model_server
    server.add(calls(tool_call("final_result", {"label": "spam", "confidence": 0.9})))
    project = make_project(tmp_path, base_url=server.url, provider=route)
    session = await (await flue.init("assistant", project=project)).session()

    result = await session.prompt("Classify: 'WIN A PRIZE'", result=Verdict)

    assert result.data == Verdict(label="spam", confidence=0.9)
    spec = next(t for t in server.requests[0]["tools"] if t["function"]["name"] == "final_result")
    assert spec["function"]["parameters"]["required"] == ["label", "confidence"]
    assert "final_result" in server.requests[0]["messages"][0]["content"]


async def test_thinking_level_and_subagent_profile_reach_the_request(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    server.add(reply("Tides follow the moon."))
    project = make_project(tmp_path, base_url=server.url, provider=route)
    sink, events = recording_sink()
    session = await (await flue.init("assistant", project=project, sink=sink)).session()

    result = await session.task("Why are there tides?", agent="researcher")

    assert result.text == "Tides follow the moon."
    body = server.requests[0]
    # researcher extends house-style: its model and thinking level, its own (empty) tools,
    # profile instructions first.
    assert body["model"] == "profile-model"
    assert body["reasoning_effort"] == "high"
    assert "tools" not in body
    system = body["messages"][0]["content"]
    assert system.index("House style") < system.index("You research one question")
    # The child has its own history; the calling session records nothing.
    assert body["messages"][1:] == [{"role": "user", "content": "Why are there tides?"}]
    assert session.messages == []
    types = [e.type for e in events]
    assert types.index("task_start") < types.index("turn_start") < types.index("task")
    task_end = next(e for e in events if e.type == "task")
    assert task_end.result["text"] == "Tides follow the moon." and task_end.is_error is False


async def test_cancel_closes_the_http_stream(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    server.add(reply("Thinking about it", hang=True))
    project = make_project(tmp_path, base_url=server.url, provider=route)
    sink, events = recording_sink()
    first_delta = asyncio.Event()
    sink.subscribe(lambda e: first_delta.set() if e.type == "text_delta" else None)
    session = await (await flue.init("assistant", project=project, sink=sink)).session()

    task = asyncio.create_task(session.prompt("Take your time."))
    await asyncio.wait_for(first_delta.wait(), 10)
    task.cancel()
    with pytest.raises(OperationCancelledError) as info:
        await task

    assert task.cancelled()
    assert "was cancelled" in str(info.value)
    # The server saw the client go away while the stream was still open.
    await asyncio.wait_for(server.aborted.wait(), 5)
    assert server.records[0].aborted and not server.records[0].completed
    end = events[-2]
    assert end.type == "operation" and end.is_error and end.error["type"] == "operation_cancelled"
    assert events[-1].type == "idle"
    assert session.messages == []  # a cancelled operation leaves no half-written history


async def test_anthropic_messages_registration_with_thinking_and_tools(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    server.add(
        calls(tool_call("word_count", {"text": "a b c"}, id="toolu_1"), thinking="Need a count."),
        reply("3 words."),
    )
    project = make_project(tmp_path, config={"providers": {"claude": {
        "api": "anthropic-messages", "base_url": server.url, "api_key": "test-key", **route,
    }}})
    sink, events = recording_sink()
    harness = await flue.init("assistant", project=project, model="claude/house-model", sink=sink)
    session = await harness.session()

    result = await session.prompt("Count 'a b c'", thinking="low")

    assert result.text == "3 words."
    assert "".join(e.delta for e in events if e.type == "thinking_delta") == "Need a count."
    first, second = server.records
    # base_url ended in /v1; litellm must still reach /v1/messages (not /v1/v1/messages).
    assert first.path == "/v1/messages" and first.headers["x-api-key"] == "test-key"
    body1, body2 = first.body, second.body
    assert body1["model"] == "house-model"
    assert body1["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body1["max_tokens"] > 2048
    assert "You are a concise assistant." in json.dumps(body1["system"])
    assert body1["tools"][0]["name"] == "word_count" and "input_schema" in body1["tools"][0]
    # The signed thinking block goes back whole with the tool use, then the tool result.
    assistant = body2["messages"][1]
    assert assistant["role"] == "assistant"
    assert {"type": "thinking", "thinking": "Need a count.", "signature": "sig-1"} in assistant["content"]
    tool_use = next(b for b in assistant["content"] if b["type"] == "tool_use")
    assert (tool_use["id"], tool_use["name"], tool_use["input"]) == ("toolu_1", "word_count", {"text": "a b c"})
    tool_result = next(b for b in body2["messages"][2]["content"] if b["type"] == "tool_result")
    assert tool_result["tool_use_id"] == "toolu_1" and "3" in json.dumps(tool_result["content"])
    assert result.usage.input > 0 and result.usage.output > 0


async def test_a_provider_error_is_a_model_call_error(tmp_path, scripted_model_server, route):
    server: ScriptedModelServer = scripted_model_server
    server.add(ScriptedTurn(error_status=401, error_message="bad key"), reply("recovered"))
    project = make_project(tmp_path, base_url=server.url, provider=route)
    session = await (await flue.init("assistant", project=project)).session()

    with pytest.raises(ModelAuthError, match=r"'scripted/chat-model' failed: HTTP 401 from provider 'scripted'") as info:
        await session.prompt("hi")
    assert isinstance(info.value, ModelCallError) and info.value.status == 401
    assert "bad key" not in str(info.value)  # the provider's words stay in the server log
    assert session.messages == []
    assert (await session.prompt("hi")).text == "recovered"
