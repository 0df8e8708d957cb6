"""A scripted model HTTP server speaking the three wire protocols Flue's clients use.

It listens on ``127.0.0.1`` (a free port) and answers each request from a
script of :class:`~flue.testing.scripted.ScriptedTurn` values, one per request,
in whichever protocol the request used:

- ``POST /v1/chat/completions`` (OpenAI Chat Completions; also ``/chat/completions``);
- ``POST /v1/responses`` (OpenAI Responses API);
- ``POST /v1/messages`` (Anthropic Messages).

Streaming requests (``stream: true``) get Server-Sent Events the way each
provider sends them: thinking first (``reasoning_content`` deltas; reasoning
summary deltas and an ``encrypted_content`` reasoning item; a signed
``thinking`` block, after a ``redacted_thinking`` block if the turn has one),
text deltas, then each tool call with its ``arguments`` split over several
fragments (parallel calls one after the other), the finish reason, and usage
(Chat Completions only when ``stream_options.include_usage`` asks). Cached
prompt tokens are reported in each protocol's own fields; cache writes in
Anthropic's only. Non-streaming requests get one JSON object
(Chat Completions and Messages).

A turn with ``error_status`` is answered with that status and the protocol's
error body instead (and ``Retry-After`` when the turn has ``retry_after``;
the body quotes the request's headers, keys included, with ``echo_request``);
it uses up its turn, so a client's retry gets the next one. A turn with
``hang=True`` keeps its stream open after the text until the client
disconnects (``aborted`` is then set) or ``hang_timeout`` passes.

Every request is recorded (``records``: path, headers, body, whether the
client went away mid-stream; ``requests``: just the bodies). Register it in a
project like any endpoint::

    providers:
      scripted: {api: openai-completions, base_url: <server.url>}
      claude: {api: anthropic-messages, base_url: <server.url>}
      responses: {api: openai-responses, base_url: <server.url>}
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, Field

from flue.config import ProviderConfig
from flue.testing.loopback import LoopbackServer
from flue.testing.scripted import Script, ScriptedTurn, ScriptExhaustedError, TurnSource, split_arguments

Send = Callable[..., Awaitable[None]]

# Anthropic's error types per status (its error body names one).
_ANTHROPIC_ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                     529: "overloaded_error"}
_ANTHROPIC_STOP = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


class RecordedRequest(BaseModel):
    path: str
    headers: dict[str, str] = Field(default_factory=dict)  # names lower-cased
    body: dict[str, Any] = Field(default_factory=dict)
    streamed: bool = False
    completed: bool = False
    aborted: bool = False
    at: float = 0.0  # time.monotonic() when it arrived (for retry timing)
    peer: str = ""  # the client's host:port (the same for calls over one kept-alive connection)


class ScriptedModelServer(LoopbackServer):
    def __init__(self, turns: list[TurnSource] | None = None, *, host: str = "127.0.0.1"):
        self.script = Script(turns)
        self.host = host
        self.records: list[RecordedRequest] = []
        self.aborted = asyncio.Event()  # a client closed a stream before it ended
        self.streaming = asyncio.Event()  # a streamed response has started
        self._counter = 0

    def routes(self, app: Any) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/responses", self._responses)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)

    # -- what tests use -------------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI-style base URL, ending in ``/v1`` (any of the three protocols may use it)."""
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
        """A registration of this server; ``api=`` picks the protocol (default Chat Completions)."""
        return ProviderConfig(**{"api": "openai-completions", "base_url": self.url, **overrides})

    # -- handlers ---------------------------------------------------------------------

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    async def _receive(self, request: Any, protocol: str) -> tuple[RecordedRequest | None, ScriptedTurn | None, Any]:
        """Record the request and pick its turn; the third value is an error response, if any."""
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return None, None, _error(protocol, 400, "request body is not JSON")
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        record = RecordedRequest(path=request.path, headers={k.lower(): v for k, v in request.headers.items()},
                                 body=body, at=time.monotonic(), peer=f"{peer[0]}:{peer[1]}" if peer else "")
        self.records.append(record)
        try:
            turn = self.script.next(body)
        except ScriptExhaustedError as exc:
            # 400, not 5xx: clients retry server errors, which would hide the cause.
            return record, None, _error(protocol, 400, str(exc))
        if turn.error_status is not None:
            message = turn.error_message
            if turn.echo_request:
                message += f" (request headers: {json.dumps(dict(request.headers))})"
            return record, None, _error(protocol, turn.error_status, message, turn.retry_after)
        self._counter += 1
        return record, turn, None

    async def _serve(self, request: Any, protocol: str,
                     answer: Callable[[Any, RecordedRequest, ScriptedTurn], Awaitable[Any]]) -> Any:
        record, turn, failure = await self._receive(request, protocol)
        if failure is not None:
            return failure
        assert record is not None and turn is not None
        return await answer(request, record, turn)

    async def _stream(self, request: Any, record: RecordedRequest, turn: ScriptedTurn,
                      write: Callable[[Send, Callable[[], Awaitable[bool]]], Awaitable[None]], *,
                      named: bool = False) -> Any:
        """Stream ``write``'s events; ``named`` adds ``event:`` lines (the Responses and Messages APIs)."""
        from aiohttp import web

        record.streamed = True
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        self.streaming.set()

        async def send(data: dict[str, Any] | str) -> None:
            if turn.delay:
                await asyncio.sleep(turn.delay)
            if isinstance(data, str):
                await resp.write(f"data: {data}\n\n".encode())
            elif named:
                await resp.write(f"event: {data['type']}\ndata: {json.dumps(data)}\n\n".encode())
            else:
                await resp.write(f"data: {json.dumps(data)}\n\n".encode())

        async def hang() -> bool:
            """After the text of a ``hang`` turn: True when the client went away (stop writing)."""
            if turn.hang and await self._hang(request, resp, turn.hang_timeout):
                record.aborted = True
                self.aborted.set()
                return True
            return False

        try:
            await write(send, hang)
            if not record.aborted:
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

    # -- Chat Completions ---------------------------------------------------------------

    async def _chat(self, request: Any) -> Any:
        return await self._serve(request, "openai", self._chat_answer)

    async def _chat_answer(self, request: Any, record: RecordedRequest, turn: ScriptedTurn) -> Any:
        from aiohttp import web

        body = record.body
        completion_id = f"chatcmpl-scripted-{self._counter}"
        usage = _chat_usage(turn, body.get("messages") or [])
        if not body.get("stream"):
            record.completed = True
            return web.json_response(_completion(completion_id, body, turn, usage))
        counter = self._counter
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": body.get("model")}

        def chunk(d: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": d, "finish_reason": finish}]}

        async def write(send: Send, hang: Callable[[], Awaitable[bool]]) -> None:
            await send(chunk({"role": "assistant", "content": ""}))
            for piece in turn.thinking_pieces():
                await send(chunk({"reasoning_content": piece}))
            for piece in turn.text_pieces():
                await send(chunk({"content": piece}))
            if await hang():
                return
            for index, call in enumerate(turn.tool_calls):
                call_id = call.id or f"call_{counter}_{index}"
                await send(chunk({"tool_calls": [{
                    "index": index, "id": call_id, "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }]}))
                for fragment in split_arguments(call.arguments_json(), 4):
                    await send(chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}))
            await send(chunk({}, turn.finish()))
            if (body.get("stream_options") or {}).get("include_usage"):
                await send({**base, "choices": [], "usage": usage})
            await send("[DONE]")

        return await self._stream(request, record, turn, write)

    # -- Responses API --------------------------------------------------------------------

    async def _responses(self, request: Any) -> Any:
        return await self._serve(request, "openai", self._responses_answer)

    async def _responses_answer(self, request: Any, record: RecordedRequest, turn: ScriptedTurn) -> Any:
        body = record.body
        if not body.get("stream"):
            record.completed = True
            return _error("openai", 400, "the scripted server streams Responses only (send stream: true)")
        n = self._counter
        encrypted = "reasoning.encrypted_content" in (body.get("include") or [])
        response: dict[str, Any] = {"id": f"resp_scripted_{n}", "object": "response", "created_at": int(time.time()),
                    "model": body.get("model"), "status": "in_progress", "output": [], "usage": None}
        seq = 0

        async def write(send: Send, hang: Callable[[], Awaitable[bool]]) -> None:
            nonlocal seq

            async def event(kind: str, **data: Any) -> None:
                nonlocal seq
                seq += 1
                await send({"type": kind, "sequence_number": seq, **data})

            output: list[dict[str, Any]] = []
            await event("response.created", response=response)
            if turn.thinking:
                rid, index = f"rs_scripted_{n}", len(output)
                await event("response.output_item.added", output_index=index,
                            item={"type": "reasoning", "id": rid, "summary": []})
                await event("response.reasoning_summary_part.added", item_id=rid, output_index=index,
                            summary_index=0, part={"type": "summary_text", "text": ""})
                for piece in turn.thinking_pieces():
                    await event("response.reasoning_summary_text.delta", item_id=rid, output_index=index,
                                summary_index=0, delta=piece)
                await event("response.reasoning_summary_part.done", item_id=rid, output_index=index,
                            summary_index=0, part={"type": "summary_text", "text": turn.thinking})
                item = {"type": "reasoning", "id": rid, "summary": [{"type": "summary_text", "text": turn.thinking}]}
                if encrypted:
                    item["encrypted_content"] = turn.signature or f"enc-{n}"
                output.append(item)
                await event("response.output_item.done", output_index=index, item=item)
            if turn.text:
                mid, index = f"msg_scripted_{n}", len(output)
                await event("response.output_item.added", output_index=index, item={
                    "type": "message", "id": mid, "role": "assistant", "status": "in_progress", "content": []})
                await event("response.content_part.added", item_id=mid, output_index=index, content_index=0,
                            part={"type": "output_text", "text": "", "annotations": []})
                for piece in turn.text_pieces():
                    await event("response.output_text.delta", item_id=mid, output_index=index, content_index=0,
                                delta=piece)
                if await hang():
                    return
                part = {"type": "output_text", "text": turn.text, "annotations": []}
                await event("response.output_text.done", item_id=mid, output_index=index, content_index=0,
                            text=turn.text)
                await event("response.content_part.done", item_id=mid, output_index=index, content_index=0, part=part)
                item = {"type": "message", "id": mid, "role": "assistant", "status": "completed", "content": [part]}
                output.append(item)
                await event("response.output_item.done", output_index=index, item=item)
            elif await hang():
                return
            for k, call in enumerate(turn.tool_calls):
                fid, index, args = f"fc_scripted_{n}_{k}", len(output), call.arguments_json()
                item = {"type": "function_call", "id": fid, "call_id": call.id or f"call_{n}_{k}",
                        "name": call.name, "arguments": "", "status": "in_progress"}
                await event("response.output_item.added", output_index=index, item=item)
                for fragment in split_arguments(args, 4):
                    await event("response.function_call_arguments.delta", item_id=fid, output_index=index,
                                delta=fragment)
                await event("response.function_call_arguments.done", item_id=fid, output_index=index, arguments=args)
                item = {**item, "arguments": args, "status": "completed"}
                output.append(item)
                await event("response.output_item.done", output_index=index, item=item)
            u = turn.usage_for(body.get("input") or [])
            usage = {"input_tokens": u.input + u.cache_read + u.cache_write,
                     "input_tokens_details": {"cached_tokens": u.cache_read},
                     "output_tokens": u.output, "output_tokens_details": {"reasoning_tokens": turn.reasoning_tokens},
                     "total_tokens": u.input + u.cache_read + u.cache_write + u.output}
            if turn.finish_reason == "length":
                done = {**response, "status": "incomplete", "output": output, "usage": usage,
                        "incomplete_details": {"reason": "max_output_tokens"}}
                await event("response.incomplete", response=done)
            else:
                await event("response.completed", response={**response, "status": "completed", "output": output,
                                                            "usage": usage})

        return await self._stream(request, record, turn, write, named=True)

    # -- Anthropic Messages -----------------------------------------------------------------

    async def _messages(self, request: Any) -> Any:
        """Anthropic Messages format (``POST /v1/messages``), for ``anthropic-messages`` registrations."""
        return await self._serve(request, "anthropic", self._messages_answer)

    async def _messages_answer(self, request: Any, record: RecordedRequest, turn: ScriptedTurn) -> Any:
        from aiohttp import web

        body = record.body
        u = turn.usage_for(body.get("messages") or [])
        stop = _ANTHROPIC_STOP.get(turn.finish(), turn.finish())
        msg_id = f"msg_scripted_{self._counter}"
        counter = self._counter
        usage = {"input_tokens": u.input, "output_tokens": u.output, "cache_read_input_tokens": u.cache_read,
                 "cache_creation_input_tokens": u.cache_write}
        if not body.get("stream"):
            record.completed = True
            return web.json_response({
                "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"),
                "content": _anthropic_blocks(turn, counter), "stop_reason": stop, "stop_sequence": None,
                "usage": usage,
            })

        async def write(send: Send, hang: Callable[[], Awaitable[bool]]) -> None:
            async def event(kind: str, **data: Any) -> None:
                await send({"type": kind, **data})

            await event("message_start", message={
                "id": msg_id, "type": "message", "role": "assistant", "model": body.get("model"), "content": [],
                "stop_reason": None, "stop_sequence": None, "usage": {**usage, "output_tokens": 1},
            })
            index = 0
            if turn.redacted_thinking:
                await event("content_block_start", index=index,
                            content_block={"type": "redacted_thinking", "data": turn.redacted_thinking})
                await event("content_block_stop", index=index)
                index += 1
            if turn.thinking:
                await event("content_block_start", index=index, content_block={"type": "thinking", "thinking": ""})
                for piece in turn.thinking_pieces():
                    await event("content_block_delta", index=index, delta={"type": "thinking_delta", "thinking": piece})
                await event("content_block_delta", index=index,
                            delta={"type": "signature_delta", "signature": turn.signature or f"sig-{counter}"})
                await event("content_block_stop", index=index)
                index += 1
            if turn.text:
                await event("content_block_start", index=index, content_block={"type": "text", "text": ""})
                for piece in turn.text_pieces():
                    await event("content_block_delta", index=index, delta={"type": "text_delta", "text": piece})
                if await hang():
                    return
                await event("content_block_stop", index=index)
                index += 1
            elif await hang():
                return
            for n, call in enumerate(turn.tool_calls):
                await event("content_block_start", index=index, content_block={
                    "type": "tool_use", "id": call.id or f"toolu_{counter}_{n}", "name": call.name, "input": {},
                })
                for fragment in split_arguments(call.arguments_json(), 4):
                    await event("content_block_delta", index=index,
                                delta={"type": "input_json_delta", "partial_json": fragment})
                await event("content_block_stop", index=index)
                index += 1
            await event("message_delta", delta={"stop_reason": stop, "stop_sequence": None},
                        usage={"output_tokens": u.output})
            await event("message_stop")

        return await self._stream(request, record, turn, write, named=True)


def _error(protocol: str, status: int, message: str, retry_after: float | None = None) -> Any:
    from aiohttp import web

    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
    if protocol == "anthropic":
        kind = _ANTHROPIC_ERRORS.get(status, "api_error")
        return web.json_response({"type": "error", "error": {"type": kind, "message": message}}, status=status,
                                 headers=headers)
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "code": None, "param": None}},
        status=status, headers=headers,
    )


def _anthropic_blocks(turn: ScriptedTurn, counter: int) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.redacted_thinking:
        blocks.append({"type": "redacted_thinking", "data": turn.redacted_thinking})
    if turn.thinking:
        blocks.append({"type": "thinking", "thinking": turn.thinking, "signature": turn.signature or f"sig-{counter}"})
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for n, call in enumerate(turn.tool_calls):
        args = json.loads(call.arguments_json()) if call.arguments_json().strip() else {}
        blocks.append({"type": "tool_use", "id": call.id or f"toolu_{counter}_{n}", "name": call.name, "input": args})
    return blocks


def _chat_usage(turn: ScriptedTurn, messages: list[dict[str, Any]]) -> dict[str, Any]:
    u = turn.usage_for(messages)
    prompt = u.input + u.cache_read + u.cache_write  # OpenAI counts cached tokens as prompt tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u.output,
        "total_tokens": prompt + u.output,
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
