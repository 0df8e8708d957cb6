"""The native model clients over real HTTP, against the scripted model server.

Every test runs for each wire protocol (``openai-completions``,
``openai-responses``, ``anthropic-messages``): the client under test is the
one the registry routes a registration with that ``api:`` to.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from flue.harness.errors import (
    ModelCallError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelUnavailableError,
)
from flue.models.base import ModelChunk, ModelRequest, StreamAccumulator
from flue.models.http import RetryPolicy
from flue.models.native import NativeProvider
from flue.models.registry import ModelRegistry
from flue.testing import ScriptedTurn, calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import free_port

pytest_plugins = ["flue.testing.pytest_plugin"]

APIS = ["openai-completions", "openai-responses", "anthropic-messages"]
PATHS = {"openai-completions": "/v1/chat/completions", "openai-responses": "/v1/responses",
         "anthropic-messages": "/v1/messages"}
QUICK_RETRIES = RetryPolicy(retries=2, base_delay=0.01, max_delay=0.02)


@pytest.fixture(params=APIS)
def api(request) -> str:
    return request.param


def client(server: ScriptedModelServer, api: str, **registration: Any) -> NativeProvider:
    registry = ModelRegistry({"p": {"api": api, "base_url": server.url, "api_key": "sk-test-123",
                                    "reasoning": True, **registration}})
    provider = registry.provider("p")
    assert isinstance(provider, NativeProvider) and provider.api == api
    provider.retry = QUICK_RETRIES
    return provider


def request(messages: list[dict[str, Any]] | str, **kw: Any) -> ModelRequest:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return ModelRequest(provider="p", model="m", messages=messages, **kw)


async def collect(provider: NativeProvider, req: ModelRequest) -> tuple[StreamAccumulator, list[ModelChunk]]:
    acc, chunks = StreamAccumulator(), []
    async for chunk in provider.stream(req):
        chunks.append(chunk)
        acc.add(chunk)
    return acc, chunks


async def test_text_streams_in_pieces_over_one_pooled_connection(api, scripted_model_server):
    server = scripted_model_server
    server.add(reply("Hello there, friend.", chunk_size=3), reply("Again."))
    provider = client(server, api, headers={"X-Team": "core"})

    acc, chunks = await collect(provider, request("hi"))
    again, _ = await collect(provider, request("hi again"))

    assert acc.text == "Hello there, friend." and again.text == "Again."
    assert len([c for c in chunks if c.text]) == 7  # delta by delta, not the whole answer at once
    assert acc.finish_reason == "stop" and acc.message() == {"role": "assistant", "content": "Hello there, friend."}
    first, second = server.records
    assert first.path == PATHS[api] and first.body["model"] == "m" and first.body["stream"] is True
    assert first.headers["x-team"] == "core"
    if api == "anthropic-messages":
        assert first.headers["x-api-key"] == "sk-test-123" and first.headers["anthropic-version"] == "2023-06-01"
    else:
        assert first.headers["authorization"] == "Bearer sk-test-123"
    # one shared session: the second call reused the first call's kept-alive connection
    assert first.peer and first.peer == second.peer


async def test_split_and_parallel_tool_calls_and_their_results_next_turn(api, scripted_model_server):
    server = scripted_model_server
    server.add(
        calls(tool_call("add", {"a": 1, "b": 2}, id="call_a"), tool_call("mul", {"a": 3, "b": 4}, id="call_m"),
              text="Working."),
        reply("3 and 12."),
    )
    provider = client(server, api)
    tools = [{"type": "function", "function": {"name": n, "description": f"{n} numbers", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}} for n in ("add", "mul")]

    acc, chunks = await collect(provider, request("add 1+2, multiply 3*4", tools=tools))

    fragments = [d for c in chunks for d in c.tool_calls]
    assert len([d for d in fragments if d.index == 0]) > 2 and len([d for d in fragments if d.index == 1]) > 2
    assert [(c.id, c.name, json.loads(c.arguments)) for c in acc.tool_calls] == [
        ("call_a", "add", {"a": 1, "b": 2}), ("call_m", "mul", {"a": 3, "b": 4})]
    assert acc.text == "Working." and acc.finish_reason == "tool_calls"

    history = [{"role": "user", "content": "add 1+2, multiply 3*4"}, acc.message(),
               {"role": "tool", "tool_call_id": "call_a", "content": "3"},
               {"role": "tool", "tool_call_id": "call_m", "content": "12"}]
    answer, _ = await collect(provider, request(history, tools=tools))
    assert answer.text == "3 and 12."

    first, second = server.requests
    if api == "openai-completions":
        assert first["tools"] == tools
        assert second["messages"][1]["tool_calls"] == acc.message()["tool_calls"]
        assert second["messages"][2:] == history[2:]
    elif api == "openai-responses":
        assert first["tools"][0] == {"type": "function", "name": "add", "description": "add numbers",
                                     "parameters": tools[0]["function"]["parameters"], "strict": False}
        assert second["input"][1:] == [
            {"role": "assistant", "content": "Working."},
            {"type": "function_call", "call_id": "call_a", "name": "add", "arguments": '{"a": 1, "b": 2}'},
            {"type": "function_call", "call_id": "call_m", "name": "mul", "arguments": '{"a": 3, "b": 4}'},
            {"type": "function_call_output", "call_id": "call_a", "output": "3"},
            {"type": "function_call_output", "call_id": "call_m", "output": "12"},
        ]
    else:
        assert first["tools"][0] == {"name": "add", "description": "add numbers",
                                     "input_schema": tools[0]["function"]["parameters"]}
        assistant, results = second["messages"][1], second["messages"][2]
        assert assistant["content"] == [
            {"type": "text", "text": "Working."},
            {"type": "tool_use", "id": "call_a", "name": "add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "call_m", "name": "mul", "input": {"a": 3, "b": 4}},
        ]
        # both results in one user turn (the last block carries the prompt-cache breakpoint)
        assert results["role"] == "user" and [(b["type"], b["tool_use_id"], b["content"]) for b in results["content"]] == [
            ("tool_result", "call_a", "3"), ("tool_result", "call_m", "12")]
        assert results["content"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_thinking_streams_first_and_goes_back_signed(api, scripted_model_server):
    server = scripted_model_server
    server.add(
        calls(tool_call("look", {"q": "x"}, id="call_1"), thinking="First, look it up.", signature="sig-abc",
              redacted_thinking="opaque-data" if api == "anthropic-messages" else None),
        reply("Found it."),
    )
    provider = client(server, api)

    acc, chunks = await collect(provider, request("find x", thinking="high"))

    kinds = ["thinking" if c.thinking else "call" for c in chunks if c.thinking or c.tool_calls]
    assert kinds.index("call") > kinds.index("thinking") and acc.thinking == "First, look it up."
    message = acc.message()
    assert message["reasoning_content"] == "First, look it up."
    history = [{"role": "user", "content": "find x"}, message,
               {"role": "tool", "tool_call_id": "call_1", "content": "x is 42"}]
    await collect(provider, request(history, thinking="high"))
    second = server.requests[1]

    if api == "anthropic-messages":
        assert message["thinking_blocks"] == [
            {"type": "redacted_thinking", "data": "opaque-data"},
            {"type": "thinking", "thinking": "First, look it up.", "signature": "sig-abc"},
        ]
        # the blocks go back whole, first in the assistant turn, as Anthropic requires with tool use
        assert second["messages"][1]["content"][:2] == message["thinking_blocks"]
    elif api == "openai-responses":
        assert message["reasoning_items"] == [{"type": "reasoning", "id": "rs_scripted_1", "encrypted_content": "sig-abc",
                                               "summary": [{"type": "summary_text", "text": "First, look it up."}]}]
        assert server.requests[0]["include"] == ["reasoning.encrypted_content"]
        assert server.requests[0]["store"] is False
        # without store, OpenAI keeps nothing: the encrypted reasoning goes back, without its id
        assert second["input"][1] == {"type": "reasoning", "encrypted_content": "sig-abc",
                                      "summary": [{"type": "summary_text", "text": "First, look it up."}]}
    else:
        assert set(message) == {"role", "content", "tool_calls", "reasoning_content"}
        assert second["messages"][1] == {"role": "assistant", "content": None, "tool_calls": message["tool_calls"]}


async def test_responses_store_keeps_reasoning_ids(scripted_model_server):
    server = scripted_model_server
    server.add(reply("Yes.", thinking="Hmm."), reply("Still yes."))
    provider = client(server, "openai-responses", store_responses=True)
    acc, _ = await collect(provider, request("ok?"))
    await collect(provider, request([{"role": "user", "content": "ok?"}, acc.message(),
                                     {"role": "user", "content": "sure?"}]))
    first, second = server.requests
    assert first["store"] is True and second["store"] is True
    assert second["input"][1]["id"] == "rs_scripted_1" and second["input"][2] == {"role": "assistant", "content": "Yes."}


LEVELS = [None, "off", "minimal", "low", "medium", "high", "xhigh"]
# What a reasoning model the catalog knows nothing more about is sent, per level.
EFFORTS = {None: "medium", "off": "low", "minimal": "low", "low": "low", "medium": "medium", "high": "high",
           "xhigh": "high"}
BUDGETS = {None: 8192, "minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}


async def test_every_thinking_level_reaches_a_reasoning_model_and_none_reaches_others(api, scripted_model_server):
    server = scripted_model_server
    server.add(*[reply("ok") for _ in range(2 * len(LEVELS))])
    thinking, plain = client(server, api), client(server, api, reasoning=False)
    for level in LEVELS:
        await collect(thinking, request("hi", thinking=level))
        await collect(plain, request("hi", thinking=level))
    bodies = server.requests
    for n, level in enumerate(LEVELS):
        sent, not_sent = bodies[2 * n], bodies[2 * n + 1]
        if api == "openai-completions":
            assert sent["reasoning_effort"] == EFFORTS[level], level
            assert "reasoning_effort" not in not_sent
        elif api == "openai-responses":
            assert sent["reasoning"] == {"effort": EFFORTS[level], "summary": "auto"}, level
            assert "reasoning" not in not_sent and "include" not in not_sent
        else:
            if level == "off":
                assert "thinking" not in sent
            else:
                budget = BUDGETS[level]
                assert sent["thinking"] == {"type": "enabled", "budget_tokens": budget}, level
                assert sent["max_tokens"] == 8192 + budget  # room for the answer after the budget
            assert "thinking" not in not_sent and not_sent["max_tokens"] == 8192


async def test_usage_counts_cached_prompt_tokens_apart(api, scripted_model_server):
    server = scripted_model_server
    writes = 30 if api == "anthropic-messages" else 0  # only Anthropic reports cache writes
    server.add(ScriptedTurn(text="ok", prompt_tokens=100, completion_tokens=7, cached_tokens=60,
                            cache_write_tokens=writes))
    acc, chunks = await collect(client(server, api), request("hi"))
    assert acc.usage is not None
    assert (acc.usage.input, acc.usage.output, acc.usage.cache_read, acc.usage.cache_write) == (40 - writes, 7, 60, writes)
    assert acc.usage.total_tokens == 107 and acc.usage.cost.total == 0  # the harness prices it, not the client
    assert [c for c in chunks if c.usage] == [chunks[-1]]  # reported once, at the end


async def test_stop_reason_length(api, scripted_model_server):
    scripted_model_server.add(ScriptedTurn(text="cut sho", finish_reason="length"))
    acc, _ = await collect(client(scripted_model_server, api), request("write a novel", max_tokens=3))
    assert acc.finish_reason == "length" and acc.text == "cut sho"
    body = scripted_model_server.requests[0]
    field = {"openai-completions": "max_tokens", "openai-responses": "max_output_tokens",
             "anthropic-messages": "max_tokens"}[api]
    # Anthropic: the thinking budget (medium, the default level) comes on top of the answer's 3 tokens
    assert body[field] == (3 + 8192 if api == "anthropic-messages" else 3)


async def test_images_in_user_messages(api, scripted_model_server):
    server = scripted_model_server
    server.add(reply("A cat."))
    parts = [{"type": "text", "text": "What is this?"},
             {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
             {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    acc, _ = await collect(client(server, api), request([{"role": "user", "content": parts}]))
    assert acc.text == "A cat."
    body = server.requests[0]
    if api == "openai-completions":
        assert body["messages"][0]["content"] == parts
    elif api == "openai-responses":
        assert body["input"][0]["content"] == [
            {"type": "input_text", "text": "What is this?"},
            {"type": "input_image", "image_url": "data:image/jpeg;base64,AAAA", "detail": "auto"},
            {"type": "input_image", "image_url": "https://example.com/cat.png", "detail": "auto"}]
    else:
        content = body["messages"][0]["content"]
        assert content[0] == {"type": "text", "text": "What is this?"}
        assert content[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}}
        assert content[2]["source"] == {"type": "url", "url": "https://example.com/cat.png"}


async def test_429_with_retry_after_is_waited_for_and_retried(api, scripted_model_server):
    server = scripted_model_server
    server.add(ScriptedTurn(error_status=429, retry_after=0.3), reply("after the wait"))
    acc, _ = await collect(client(server, api), request("hi"))
    assert acc.text == "after the wait"
    first, second = server.records
    # the backoff alone is ~10 ms: the gap is the server's Retry-After
    assert second.at - first.at >= 0.29 and second.body == first.body


async def test_rate_limit_that_outlasts_the_retries_is_typed(api, scripted_model_server):
    server = scripted_model_server
    server.add(ScriptedTurn(error_status=429, retry_after=120))  # longer than anyone waits
    with pytest.raises(ModelRateLimitError, match=r"'p/m' failed: HTTP 429 from provider 'p'.*wait 120s") as info:
        await collect(client(server, api), request("hi"))
    assert info.value.status == 429 and len(server.records) == 1


async def test_500_becomes_a_typed_error_after_bounded_retries(api, scripted_model_server, caplog):
    server = scripted_model_server
    server.add(*[ScriptedTurn(error_status=500, error_message="boom: sk-test-123 is the key")] * 3, reply("unused"))
    with caplog.at_level(logging.WARNING, logger="flue.models"):
        with pytest.raises(ModelUnavailableError) as info:
            await collect(client(server, api), request("hi"))
    message = str(info.value)
    assert message.startswith("model call to 'p/m' failed: HTTP 500 from provider 'p' after 3 attempts")
    assert "retry later" in message and info.value.status == 500
    assert len(server.records) == 3 and server.script.remaining == 1  # 1 try + 2 retries, then it gave up
    # the provider's body is in the log, with the key masked, and never in the error
    assert "boom" not in message and "sk-test-123" not in message
    assert "boom: *** is the key" in caplog.text and "sk-test-123" not in caplog.text


async def test_cancelling_mid_stream_closes_the_connection(api, scripted_model_server):
    server = scripted_model_server
    server.add(reply("Thinking about it", hang=True))
    provider = client(server, api)
    first_text = asyncio.Event()

    async def consume() -> None:
        async for chunk in provider.stream(request("take your time")):
            if chunk.text:
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # the server saw the client go away while its stream was still open
    await asyncio.wait_for(server.aborted.wait(), 5)
    assert server.records[0].aborted and not server.records[0].completed


async def test_closing_the_stream_early_closes_the_connection(api, scripted_model_server):
    server = scripted_model_server
    server.add(reply("Thinking about it", hang=True))
    stream = client(server, api).stream(request("take your time"))
    async for chunk in stream:
        if chunk.text:
            break
    await stream.aclose()
    await asyncio.wait_for(server.aborted.wait(), 5)
    assert server.records[0].aborted


async def test_an_unreachable_provider_names_its_url():
    port = free_port()  # nothing listens there
    registry = ModelRegistry({"p": {"api": "openai-completions", "base_url": f"http://127.0.0.1:{port}/v1"}})
    provider = registry.provider("p")
    provider.retry = RetryPolicy(retries=1, base_delay=0.01)
    with pytest.raises(ModelConnectionError, match=rf"could not reach http://127.0.0.1:{port}/v1/chat/completions "
                                                   r"after 2 attempts \(connection refused or unreachable\)"):
        await collect(provider, request("hi"))


# -- streams the scripted server does not write: odd network chunking, cut streams, in-stream errors --


def raw_server(handler):
    """An aiohttp app on a free port whose one route writes what ``handler`` writes."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", handler)
    return web.AppRunner(app, shutdown_timeout=0.5)


async def serving(runner) -> str:
    from aiohttp import web

    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return f"http://127.0.0.1:{runner.addresses[0][1]}/v1"


def sse_response(request):
    from aiohttp import web

    return web.StreamResponse(headers={"Content-Type": "text/event-stream"})


async def test_sse_split_anywhere_by_the_network_is_reassembled():
    events = (
        b": a comment first\r\n\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n'
        b'data: {"choices":[{"index":0,\r\ndata: "delta":{"content":"lo"}}]}\r\n\r\n'  # data over two lines
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":"{\\"a\\""}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":": 1}"}}]}}]}\n\n'
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}\n\n'
        b"data: [DONE]\n\n"
    )

    async def handler(request):
        resp = sse_response(request)
        await resp.prepare(request)
        for i in range(0, len(events), 7):  # 7-byte writes: splits inside lines and inside \r\n
            await resp.write(events[i:i + 7])
            await asyncio.sleep(0)
        await resp.write_eof()
        return resp

    runner = raw_server(handler)
    try:
        url = await serving(runner)
        provider = ModelRegistry({"p": {"api": "openai-completions", "base_url": url}}).provider("p")
        acc, _ = await collect(provider, request("hi"))
    finally:
        await runner.cleanup()
    assert acc.text == "Hello" and acc.finish_reason == "tool_calls"
    assert [(c.id, c.name, c.arguments) for c in acc.tool_calls] == [("c1", "f", '{"a": 1}')]
    assert (acc.usage.input, acc.usage.output) == (5, 2)


async def test_a_stream_cut_short_is_a_connection_error_not_a_short_answer():
    async def handler(request):
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(b'data: {"choices":[{"index":0,"delta":{"content":"Half an ans"}}]}\n\n')
        await resp.write_eof()  # no finish_reason, no [DONE]
        return resp

    runner = raw_server(handler)
    try:
        url = await serving(runner)
        provider = ModelRegistry({"p": {"api": "openai-completions", "base_url": url}}).provider("p")
        with pytest.raises(ModelConnectionError, match=r"broke while the answer streamed"):
            await collect(provider, request("hi"))
    finally:
        await runner.cleanup()


async def test_anthropic_overloaded_in_the_stream_is_retried_before_any_output():
    seen: list[int] = []
    message = (
        b'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}\n\n'
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"fine"}}\n\n'
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}\n\n'
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    overloaded = b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n'

    async def handler(request):
        seen.append(len(seen))
        resp = sse_response(request)
        await resp.prepare(request)
        await resp.write(overloaded if len(seen) < 3 else message)
        await resp.write_eof()
        return resp

    runner = raw_server(handler)
    try:
        url = await serving(runner)
        provider = ModelRegistry({"p": {"api": "anthropic-messages", "base_url": url}}).provider("p")
        provider.retry = QUICK_RETRIES
        acc, _ = await collect(provider, request("hi"))
        assert acc.text == "fine" and len(seen) == 3
        seen.clear()
        provider.retry = RetryPolicy(retries=1, base_delay=0.01)
        with pytest.raises(ModelUnavailableError, match=r"reported overloaded_error in its stream.*after 2 attempts"):
            await collect(provider, request("hi"))
    finally:
        await runner.cleanup()


async def test_a_json_answer_instead_of_a_stream_points_at_the_base_url():
    from aiohttp import web

    async def handler(request):
        return web.json_response({"hello": "this is some other API"})

    runner = raw_server(handler)
    try:
        url = await serving(runner)
        provider = ModelRegistry({"p": {"api": "openai-responses", "base_url": url}}).provider("p")
        with pytest.raises(ModelCallError, match=rf"{url}/responses answered with application/json, not an event "
                                                 r"stream: check that the provider's base_url serves the "
                                                 r"openai-responses API"):
            await collect(provider, request("hi"))
    finally:
        await runner.cleanup()


def test_the_session_closes_with_the_loop_that_made_it(tmp_path):
    """A script's asyncio.run() leaves no unclosed session behind (no runtime closed it)."""
    import subprocess
    import sys

    code = (
        "import asyncio, gc, sys, warnings\n"
        "warnings.simplefilter('always')\n"
        "from flue.models.registry import ModelRegistry\n"
        "from flue.models.base import ModelRequest\n"
        "from flue.models.http import client_session\n"
        "from flue.testing import ScriptedModelServer, reply\n"
        "async def main():\n"
        "    async with ScriptedModelServer([reply('one'), reply('two')]) as s:\n"
        "        p = ModelRegistry({'p': {'api': 'openai-completions', 'base_url': s.url}}).provider('p')\n"
        "        for _ in range(2):\n"
        "            async for _c in p.stream(ModelRequest(provider='p', model='m', messages=[])):\n"
        "                pass\n"
        "        session = await client_session()\n"
        "    return session\n"
        "session = asyncio.run(main())\n"
        "gc.collect()\n"
        "print('closed' if session.closed else 'open')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "closed" and "Unclosed" not in proc.stderr, proc.stderr


async def test_text_that_is_not_valid_unicode_is_sent_repaired(scripted_model_server):
    scripted_model_server.add(reply("ok"))
    acc, _ = await collect(client(scripted_model_server, "openai-completions"),
                           request([{"role": "tool", "tool_call_id": "c", "content": "bad \ud800 byte"}]))
    assert acc.text == "ok"
    assert scripted_model_server.requests[0]["messages"][0]["content"] == "bad ? byte"


async def test_a_responses_agent_keeps_its_reasoning_across_a_tool_call_and_in_its_session(tmp_path,
                                                                                          scripted_model_server):
    """Through the harness: the loop, the session store and the next turn keep ``reasoning_items``."""
    from fixtures.harness.support import make_project

    import flue

    server = scripted_model_server
    server.add(calls(tool_call("word_count", {"text": "a b c"}, id="call_wc"), thinking="Count them.",
                     signature="enc-secret"),
               reply("3 words."))
    project = make_project(tmp_path, config={"providers": {"gpt": {
        "api": "openai-responses", "base_url": server.url, "api_key": "sk-test", "reasoning": True}}})
    session = await (await flue.init("assistant", project=project, model="gpt/house")).session()

    result = await session.prompt("Count 'a b c'", thinking="low")

    assert result.text == "3 words."
    first, second = server.requests
    assert first["reasoning"] == {"effort": "low", "summary": "auto"} and first["store"] is False
    assert [i.get("type") for i in second["input"][2:]] == ["reasoning", "function_call", "function_call_output"]
    assert second["input"][2]["encrypted_content"] == "enc-secret"
    assert second["input"][4] == {"type": "function_call_output", "call_id": "call_wc", "output": "3"}
    assistant = next(m for m in session.messages if m.get("tool_calls"))
    assert assistant["reasoning_items"][0]["encrypted_content"] == "enc-secret"
