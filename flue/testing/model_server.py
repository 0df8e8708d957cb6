"""A scripted OpenAI-compatible HTTP server, for tests that go through litellm.

It listens on ``127.0.0.1`` (a free port) and answers
``POST /v1/chat/completions`` (and, in Anthropic's Messages format,
``POST /v1/messages``) from a script of
:class:`~flue.testing.scripted.ScriptedTurn` values, one per request:

- streaming (``stream: true``) as Server-Sent Events: a role chunk, thinking
  as ``reasoning_content`` deltas, text deltas, each tool call's ``arguments``
  split over several fragments (parallel calls use ``index`` 0, 1, ...),
  a ``finish_reason`` chunk, a usage chunk with ``choices: []`` when the
  request asks for ``stream_options.include_usage``, then ``data: [DONE]``;
- non-streaming as one ``chat.completion`` JSON object.

Every request is recorded (``records``: path, headers, body, whether the
client went away mid-stream; ``requests``: just the bodies). A turn with
``hang=True`` keeps its stream open after the text until the client
disconnects (``aborted`` is then set) or ``hang_timeout`` passes.

Register it in a project like any OpenAI-compatible endpoint::

    providers:
      scripted: {api: openai-completions, base_url: <server.url>}
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from pydantic import BaseModel, Field

from flue.config import ProviderConfig
from flue.testing.scripted import Script, ScriptedTurn, ScriptExhaustedError, TurnSource, split_arguments


class RecordedRequest(BaseModel):
    path: str
    headers: dict[str, str] = Field(default_factory=dict)  # names lower-cased
    body: dict[str, Any] = Field(default_factory=dict)
    streamed: bool = False
    completed: bool = False
    aborted: bool = False


class ScriptedModelServer:
    def __init__(self, turns: list[TurnSource] | None = None, *, host: str = "127.0.0.1"):
        self.script = Script(turns)
        self.host = host
        self.port: int | None = None
        self.records: list[RecordedRequest] = []
        self.aborted = asyncio.Event()  # a client closed a stream before it ended
        self.streaming = asyncio.Event()  # a streamed response has started
        self._runner: Any = None
        self._counter = 0

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> ScriptedModelServer:
        from aiohttp import web

        app = web.Application(client_max_size=256 * 1024 * 1024)  # prompts may carry large images
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/messages", self._messages)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> ScriptedModelServer:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- what tests use -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI-style base URL, ending in ``/v1``."""
        if self.port is None:
            raise RuntimeError("the scripted model server is not started")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """The URL without ``/v1`` (what an ``anthropic-messages`` registration may also use)."""
        return self.url[: -len("/v1")]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return [r.body for r in self.records]

    def add(self, *turns: TurnSource) -> None:
        self.script.add(*turns)

    def provider_config(self, **overrides: Any) -> ProviderConfig:
        return ProviderConfig(api="openai-completions", base_url=self.url, **overrides)

    # -- handlers ---------------------------------------------------------------------

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _receive(self, request: Any) -> tuple[RecordedRequest | None, ScriptedTurn | None, Any]:
        """Record the request and pick its turn; the third value is an error response, if any."""
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return None, None, _error(400, "request body is not JSON")
        record = RecordedRequest(path=request.path, headers={k.lower(): v for k, v in request.headers.items()}, body=body)
        self.records.append(record)
        try:
            turn = self.script.next(body)
        except ScriptExhaustedError as exc:
            # 400, not 5xx: the SDKs retry server errors, which would hide the cause.
            return record, None, _error(400, str(exc))
        if turn.error_status is not None:
            return record, None, _error(turn.error_status, turn.error_message)
        self._counter += 1
        return record, turn, None

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        record, turn, failure = await self._receive(request)
        if failure is not None:
            return failure
        assert record is not None and turn is not None
        body = record.body
        completion_id = f"chatcmpl-scripted-{self._counter}"
        usage = _usage_json(turn, body.get("messages") or [])
        if not body.get("stream"):
            record.completed = True
            return web.json_response(_completion(completion_id, body, turn, usage))
        record.streamed = True
        return await self._stream(request, record, completion_id, body, turn, usage)

    async def _stream(
        self, request: Any, record: RecordedRequest, cid: str, body: dict[str, Any], turn: ScriptedTurn,
        usage: dict[str, Any],
    ) -> Any:
        from aiohttp import web

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self.streaming.set()
        base = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()), "model": body.get("model")}

        async def send(choices: list[dict[str, Any]], **extra: Any) -> None:
            if turn.delay:
                await asyncio.sleep(turn.delay)
            await resp.write(f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n".encode())

        def delta(d: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": d, "finish_reason": finish}]

        try:
            await send(delta({"role": "assistant", "content": ""}))
            for piece in turn.thinking_pieces():
                await send(delta({"reasoning_content": piece}))
            for piece in turn.text_pieces():
                await send(delta({"content": piece}))
            if turn.hang and await self._hang(request, resp, turn.hang_timeout):
                record.aborted = True
                self.aborted.set()
                return resp
            for index, call in enumerate(turn.tool_calls):
                call_id = call.id or f"call_{self._counter}_{index}"
                await send(delta({"tool_calls": [{
                    "index": index, "id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }]}))
                for fragment in split_arguments(call.arguments_json(), 4):
                    await send(delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
            await send(delta({}, turn.finish()))
            if (body.get("stream_options") or {}).get("include_usage"):
                await send([], usage=usage)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
            record.completed = True
        except ConnectionResetError:  # the client went away mid-stream
            record.aborted = True
            self.aborted.set()
        except asyncio.CancelledError:  # aiohttp cancelled the handler because the client left
            record.aborted = True
            self.aborted.set()
            raise
        return resp

    async def _messages(self, request: Any) -> Any:
        """Anthropic Messages format (``POST /v1/messages``), for ``anthropic-messages`` registrations."""
        from aiohttp import web

        record, turn, failure = await self._receive(request)
        if failure is not None:
            return failure
        assert record is not None and turn is not None
        body = record.body
        u = turn.usage_for(body.get("messages") or [])
        stop = "tool_use" if turn.tool_calls else "end_turn"
        msg_id = f"msg_scripted_{self._counter}"
        if not body.get("stream"):
            record.completed = True
            return web.json_response({
                "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"),
                "content": _anthropic_blocks(turn, self._counter), "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": u.input, "output_tokens": u.output, "cache_read_input_tokens": u.cache_read},
            })
        record.streamed = True
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self.streaming.set()

        async def send(event: str, data: dict[str, Any]) -> None:
            if turn.delay:
                await asyncio.sleep(turn.delay)
            await resp.write(f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode())

        try:
            await send("message_start", {"message": {
                "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"), "content": [],
                "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": u.input, "output_tokens": 1, "cache_read_input_tokens": u.cache_read},
            }})
            index = 0
            if turn.thinking:
                await send("content_block_start", {"index": index, "content_block": {"type": "thinking", "thinking": ""}})
                for piece in turn.thinking_pieces():
                    await send("content_block_delta", {"index": index, "delta": {"type": "thinking_delta", "thinking": piece}})
                await send("content_block_delta", {
                    "index": index, "delta": {"type": "signature_delta", "signature": f"sig-{self._counter}"},
                })
                await send("content_block_stop", {"index": index})
                index += 1
            if turn.text:
                await send("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                for piece in turn.text_pieces():
                    await send("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
                if turn.hang and await self._hang(request, resp, turn.hang_timeout):
                    record.aborted = True
                    self.aborted.set()
                    return resp
                await send("content_block_stop", {"index": index})
                index += 1
            for n, call in enumerate(turn.tool_calls):
                await send("content_block_start", {"index": index, "content_block": {
                    "type": "tool_use", "id": call.id or f"toolu_{self._counter}_{n}", "name": call.name, "input": {},
                }})
                for fragment in split_arguments(call.arguments_json(), 4):
                    await send("content_block_delta", {
                        "index": index, "delta": {"type": "input_json_delta", "partial_json": fragment},
                    })
                await send("content_block_stop", {"index": index})
                index += 1
            await send("message_delta", {
                "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": u.output},
            })
            await send("message_stop", {})
            await resp.write_eof()
            record.completed = True
        except ConnectionResetError:
            record.aborted = True
            self.aborted.set()
        except asyncio.CancelledError:
            record.aborted = True
            self.aborted.set()
            raise
        return resp

    async def _hang(self, request: Any, resp: Any, limit: float) -> bool:
        """Keep the stream open; return True once the client has disconnected."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            transport = request.transport
            if transport is None or transport.is_closing():
                return True
            try:
                await resp.write(b": keep-alive\n\n")  # an SSE comment; raises once the peer is gone
            except ConnectionResetError:
                return True
            await asyncio.sleep(0.02)
        return False


def _error(status: int, message: str) -> Any:
    from aiohttp import web

    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": None, "param": None}}, status=status
    )


def _anthropic_blocks(turn: ScriptedTurn, counter: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.thinking:
        blocks.append({"type": "thinking", "thinking": turn.thinking, "signature": f"sig-{counter}"})
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for n, call in enumerate(turn.tool_calls):
        args = json.loads(call.arguments_json()) if call.arguments_json().strip() else {}
        blocks.append({"type": "tool_use", "id": call.id or f"toolu_{counter}_{n}", "name": call.name, "input": args})
    return blocks


def _usage_json(turn: ScriptedTurn, messages: list[dict[str, Any]]) -> dict[str, Any]:
    u = turn.usage_for(messages)
    return {
        "prompt_tokens": u.input + u.cache_read,
        "completion_tokens": u.output,
        "total_tokens": u.input + u.cache_read + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
        "completion_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
    }


def _completion(cid: str, body: dict[str, Any], turn: ScriptedTurn, usage: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
    if turn.thinking:
        message["reasoning_content"] = turn.thinking
    if turn.tool_calls:
        message["tool_calls"] = [
            {"id": c.id or f"call_{i}", "type": "function", "function": {"name": c.name, "arguments": c.arguments_json()}}
            for i, c in enumerate(turn.tool_calls)
        ]
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": turn.finish()}],
        "usage": usage,
    }
