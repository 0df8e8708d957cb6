"""The ``anthropic-messages`` wire protocol: Anthropic's Messages API, streamed.

``POST <base_url>/v1/messages`` (a ``base_url`` ending in ``/v1`` is used as
is) with ``stream: true``, ``x-api-key`` and ``anthropic-version``. History
messages become Anthropic's: system messages the top-level ``system``,
assistant tool calls ``tool_use`` blocks, tool results ``tool_result`` blocks
of one user turn, images ``image`` blocks; consecutive turns of one role are
merged, as the API requires alternation.

Thinking: streamed ``thinking`` blocks arrive as thinking deltas; the whole
blocks, with their signatures (and ``redacted_thinking`` blocks, whose data
is encrypted), are kept on the assistant message as ``thinking_blocks`` and
sent back first in that turn's content, as Anthropic requires for tool use
with thinking. Levels map to adaptive thinking or token budgets
(:mod:`flue.models.thinking`).

Prompt caching: a ``cache_control`` breakpoint goes on the system prompt and
on the last message, so each turn reads the previous turns from the cache.
Usage: ``input_tokens`` excludes cache reads and writes
(``cache_read_input_tokens``, ``cache_creation_input_tokens``), as ours does.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from flue.models.base import ModelChunk, ModelRequest, ToolCallDelta
from flue.models.catalog import ModelInfo
from flue.models.native import (
    IncompleteStream,
    NativeProvider,
    StreamFailure,
    StreamParser,
    image_source,
    loads,
    text_of,
    tool_spec_parts,
)
from flue.models.thinking import anthropic_max_tokens, anthropic_thinking
from flue.usage import Usage

ANTHROPIC_VERSION = "2023-06-01"
THINKING_BLOCKS = "thinking_blocks"  # the assistant message's key for signed thinking
CACHE = {"type": "ephemeral"}
STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop", "tool_use": "tool_calls",
    "max_tokens": "length", "model_context_window_exceeded": "length", "refusal": "content_filter",
}
ERROR_STATUS = {
    "overloaded_error": 529, "rate_limit_error": 429, "api_error": 500, "timeout_error": 504,
    "invalid_request_error": 400, "authentication_error": 401, "permission_error": 403, "not_found_error": 404,
    "request_too_large": 413,
}


class AnthropicMessagesProvider(NativeProvider):
    api: ClassVar[str] = "anthropic-messages"
    path: ClassVar[str] = "/v1/messages"

    def url(self) -> str:
        url = super().url()
        return url.replace("/v1/v1/", "/v1/", 1)  # a base_url that already ends in /v1

    def auth_headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": ANTHROPIC_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def body(self, request: ModelRequest, info: ModelInfo) -> dict[str, Any]:
        system, messages = wire_messages(request.messages)
        max_tokens = anthropic_max_tokens(request.max_tokens, info)
        thinking, max_tokens = anthropic_thinking(request.thinking, info, max_tokens)
        body: dict[str, Any] = {"model": request.model, "max_tokens": max_tokens, "messages": messages, "stream": True}
        if system:
            body["system"] = [{"type": "text", "text": system, "cache_control": CACHE}]
        if messages:
            _mark_cache(messages[-1])
        if request.tools:
            body["tools"] = [_tool(spec) for spec in request.tools]
        body.update(thinking)
        return body

    def parser(self, request: ModelRequest, info: ModelInfo) -> StreamParser:
        return MessagesParser()


def _tool(spec: dict[str, Any]) -> dict[str, Any]:
    name, description, parameters = tool_spec_parts(spec)
    out: dict[str, Any] = {"name": name, "input_schema": parameters}
    if description:
        out["description"] = description
    return out


def _mark_cache(message: dict[str, Any]) -> None:
    for block in reversed(message["content"]):
        if block.get("type") not in ("thinking", "redacted_thinking"):
            block["cache_control"] = CACHE
            return


def wire_messages(messages: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """(system text, Anthropic messages) from the history; the history is not modified."""
    system: list[str] = []
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for msg in messages:
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            text = text_of(content)
            if text:
                system.append(text)
        elif role == "assistant":
            add("assistant", _assistant_blocks(msg))
        elif role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": msg.get("tool_call_id")}
            text = text_of(content)
            if text:  # an empty output is sent without content (empty text is refused)
                result["content"] = text
            add("user", [result])
        else:
            add("user", _user_blocks(content))
    return "\n\n".join(system), out


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content or ():
        if not isinstance(part, dict):
            continue
        if part.get("type") == "image_url":
            media, data, url = image_source(part)
            source = {"type": "base64", "media_type": media, "data": data} if media else {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        elif part.get("text"):
            blocks.append({"type": "text", "text": part["text"]})
    return blocks


def _assistant_blocks(msg: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for block in msg.get(THINKING_BLOCKS) or ():
        # only signed (or redacted) blocks may go back; other providers' reasoning stays home
        if block.get("type") == "thinking" and block.get("signature"):
            blocks.append({"type": "thinking", "thinking": block.get("thinking", ""), "signature": block["signature"]})
        elif block.get("type") == "redacted_thinking" and block.get("data"):
            blocks.append({"type": "redacted_thinking", "data": block["data"]})
    text = text_of(msg.get("content"))
    if text:
        blocks.append({"type": "text", "text": text})
    for call in msg.get("tool_calls") or ():
        fn = call.get("function") or {}
        try:
            args = json.loads(fn.get("arguments") or "{}")
        except ValueError:
            args = {}  # the model's malformed arguments: the tool result already says so
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                       "input": args if isinstance(args, dict) else {}})
    return blocks


class MessagesParser(StreamParser):
    def __init__(self) -> None:
        self.done = False
        self.stop_reason: str | None = None
        self.blocks: list[dict[str, Any]] = []  # thinking blocks, in order
        self._thinking: dict[int, dict[str, Any]] = {}  # content index -> its thinking block
        self._tools: dict[int, int] = {}  # content index -> our tool-call index
        self._input = self._output = self._cache_read = self._cache_write = 0

    def feed(self, event: str, data: bytes) -> ModelChunk | None:
        obj = loads(data)
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type") or event
        if kind == "content_block_delta":
            delta = obj.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                text = delta.get("text")
                return ModelChunk(text=text) if text else None
            if dtype == "input_json_delta":
                index = self._tools.get(obj.get("index", -1))
                partial = delta.get("partial_json")
                if index is None or not partial:
                    return None
                return ModelChunk(tool_calls=[ToolCallDelta(index=index, arguments=partial)])
            if dtype == "thinking_delta":
                text = delta.get("thinking") or ""
                block = self._thinking.get(obj.get("index", -1))
                if block is not None:
                    block["thinking"] += text
                return ModelChunk(thinking=text) if text else None
            if dtype == "signature_delta":
                block = self._thinking.get(obj.get("index", -1))
                if block is not None:
                    block["signature"] = block.get("signature", "") + (delta.get("signature") or "")
            return None
        if kind == "content_block_start":
            return self._block_start(obj.get("index", -1), obj.get("content_block") or {})
        if kind == "message_start":
            self._usage((obj.get("message") or {}).get("usage") or {})
            return None
        if kind == "message_delta":
            reason = (obj.get("delta") or {}).get("stop_reason")
            if reason:
                self.stop_reason = STOP_REASONS.get(reason, reason)
            self._usage(obj.get("usage") or {})
            return None
        if kind == "message_stop":
            self.done = True
            return None
        if kind == "error":
            error = obj.get("error") or {}
            code = str(error.get("type") or "api_error")
            raise StreamFailure(ERROR_STATUS.get(code, 500), code, str(error.get("message") or ""))
        return None  # ping, content_block_stop, future events

    def _block_start(self, index: int, block: dict[str, Any]) -> ModelChunk | None:
        btype = block.get("type")
        if btype == "text":
            return ModelChunk(text=block["text"]) if block.get("text") else None
        if btype == "thinking":
            kept = {"type": "thinking", "thinking": block.get("thinking") or ""}
            if block.get("signature"):
                kept["signature"] = block["signature"]
            self._thinking[index] = kept
            self.blocks.append(kept)
            return ModelChunk(thinking=kept["thinking"]) if kept["thinking"] else None
        if btype == "redacted_thinking":
            self.blocks.append({"type": "redacted_thinking", "data": block.get("data", "")})
            return None
        if btype == "tool_use":
            call = self._tools[index] = len(self._tools)
            given = block.get("input")
            arguments = json.dumps(given) if isinstance(given, dict) and given else ""
            return ModelChunk(tool_calls=[ToolCallDelta(index=call, id=block.get("id"), name=block.get("name"),
                                                        arguments=arguments)])
        return None  # server tool use and its results are not Flue tool calls

    def _usage(self, usage: dict[str, Any]) -> None:
        # message_start has the input side; message_delta the cumulative output (and, lately, input again)
        self._input = usage.get("input_tokens") or self._input
        self._output = usage.get("output_tokens") or self._output
        self._cache_read = usage.get("cache_read_input_tokens") or self._cache_read
        self._cache_write = usage.get("cache_creation_input_tokens") or self._cache_write

    def finish(self) -> ModelChunk | None:
        if not self.done and self.stop_reason is None:
            raise IncompleteStream("the stream ended before the message stopped")
        usage = None
        if self._input or self._output or self._cache_read or self._cache_write:
            usage = Usage.of(input=self._input, output=self._output, cache_read=self._cache_read,
                             cache_write=self._cache_write)
        extra = {THINKING_BLOCKS: self.blocks} if self.blocks else {}
        return ModelChunk(usage=usage, finish_reason=self.stop_reason or "stop", extra=extra)
