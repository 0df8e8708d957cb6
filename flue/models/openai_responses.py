"""The ``openai-responses`` wire protocol: OpenAI's Responses API, streamed.

``POST <base_url>/responses`` with ``stream: true``. Each call sends the
whole conversation as input items (Flue keeps no server-side state); ``store``
is the registration's ``store_responses`` (Flue's ``storeResponses``, off by
default). History messages become items: system and user messages (images as
``input_image``), assistant text, ``function_call`` and
``function_call_output`` items keyed by the tool call id.

Reasoning models get ``reasoning: {effort, summary: auto}`` and
``include: [reasoning.encrypted_content]``: the reasoning summary streams as
thinking, and each reasoning item (encrypted) is kept on the assistant
message as ``reasoning_items`` and sent back before that turn's output on the
next call, so the model keeps its chain of thought across tool calls without
OpenAI storing anything. With ``store`` on, the items keep their ids too.

Usage: ``input_tokens`` includes ``input_tokens_details.cached_tokens``; ours
does not. ``status: incomplete`` for ``max_output_tokens`` is finish reason
``length``.
"""

from __future__ import annotations

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
from flue.models.thinking import openai_effort
from flue.usage import Usage

REASONING_ITEMS = "reasoning_items"  # the assistant message's key for the encrypted reasoning


class OpenAIResponsesProvider(NativeProvider):
    api: ClassVar[str] = "openai-responses"
    path: ClassVar[str] = "/responses"

    @property
    def store(self) -> bool:
        return bool(self.registration is not None and self.registration.store_responses)

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def body(self, request: ModelRequest, info: ModelInfo) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "input": input_items(request.messages, keep_ids=self.store),
            "stream": True,
            "store": self.store,
        }
        if request.tools:
            body["tools"] = [_tool(spec) for spec in request.tools]
        if request.max_tokens:
            body["max_output_tokens"] = request.max_tokens
        effort = openai_effort(request.thinking, info) if self.endpoint.reasoning_effort else None
        if effort is not None:
            body["reasoning"] = {"effort": effort, "summary": "auto"}
            body["include"] = ["reasoning.encrypted_content"]
        if request.cache_key and self.endpoint.prompt_cache_key:
            body["prompt_cache_key"] = request.cache_key
        return body

    def parser(self, request: ModelRequest, info: ModelInfo) -> StreamParser:
        return ResponsesParser()


def _tool(spec: dict[str, Any]) -> dict[str, Any]:
    name, description, parameters = tool_spec_parts(spec)
    return {"type": "function", "name": name, "description": description, "parameters": parameters, "strict": False}


def input_items(messages: list[dict[str, Any]], *, keep_ids: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for msg in messages:
        role = msg.get("role")
        content = msg.get("content")
        if role == "assistant":
            for reasoning in msg.get(REASONING_ITEMS) or ():
                item = _reasoning_input(reasoning, keep_ids)
                if item is not None:
                    items.append(item)
            text = text_of(content)
            if text:
                items.append({"role": "assistant", "content": text})
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") or {}
                items.append({
                    "type": "function_call", "call_id": call.get("id"), "name": fn.get("name"),
                    "arguments": fn.get("arguments") or "{}",
                })
        elif role == "tool":
            items.append({"type": "function_call_output", "call_id": msg.get("tool_call_id"), "output": text_of(content)})
        elif role == "user" and isinstance(content, list):
            items.append({"role": "user", "content": [_user_part(p) for p in content if isinstance(p, dict)]})
        else:  # system, developer, user text
            items.append({"role": role or "user", "content": text_of(content)})
    return items


def _user_part(part: dict[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image_url":
        _media, _data, url = image_source(part)
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    return {"type": "input_text", "text": part.get("text", "")}


def _reasoning_input(item: dict[str, Any], keep_ids: bool) -> dict[str, Any] | None:
    out: dict[str, Any] = {"type": "reasoning", "summary": item.get("summary") or []}
    if item.get("encrypted_content"):
        out["encrypted_content"] = item["encrypted_content"]
    if keep_ids and item.get("id"):
        out["id"] = item["id"]
    elif "encrypted_content" not in out:
        return None  # neither stored by OpenAI nor carried here: nothing to send back
    return out


class ResponsesParser(StreamParser):
    def __init__(self) -> None:
        self.done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.reasoning: list[dict[str, Any]] = []
        self._calls: dict[int, int] = {}  # output_index -> our tool-call index
        self._streamed_args: set[int] = set()  # tool calls whose arguments came as deltas

    def feed(self, event: str, data: bytes) -> ModelChunk | None:
        obj = loads(data)
        if not isinstance(obj, dict):
            return None
        kind = obj.get("type") or event
        if kind == "response.output_text.delta" or kind == "response.refusal.delta":
            delta = obj.get("delta")
            return ModelChunk(text=delta) if delta else None
        if kind == "response.function_call_arguments.delta":
            index = self._calls.get(obj.get("output_index", -1))
            delta = obj.get("delta")
            if index is None or not delta:
                return None
            self._streamed_args.add(index)
            return ModelChunk(tool_calls=[ToolCallDelta(index=index, arguments=delta)])
        if kind == "response.reasoning_summary_text.delta" or kind == "response.reasoning_text.delta":
            delta = obj.get("delta")
            return ModelChunk(thinking=delta) if delta else None
        if kind == "response.reasoning_summary_part.added":
            # summary parts are paragraphs: keep them apart in the thinking text
            return ModelChunk(thinking="\n\n") if obj.get("summary_index", 0) else None
        if kind == "response.output_item.added":
            return self._item_added(obj)
        if kind == "response.output_item.done":
            return self._item_done(obj)
        if kind in ("response.completed", "response.incomplete"):
            self._completed(obj.get("response") or {})
            return None
        if kind == "response.failed":
            error = (obj.get("response") or {}).get("error") or {}
            raise _failure(error)
        if kind == "error":
            error = obj.get("error")
            raise _failure(error if isinstance(error, dict) else obj)
        return None

    def _item_added(self, obj: dict[str, Any]) -> ModelChunk | None:
        item = obj.get("item") or {}
        if item.get("type") != "function_call":
            return None
        index = self._calls[obj.get("output_index", len(self._calls))] = len(self._calls)
        arguments = item.get("arguments") or ""
        if arguments:
            self._streamed_args.add(index)
        return ModelChunk(tool_calls=[ToolCallDelta(index=index, id=item.get("call_id") or item.get("id"),
                                                    name=item.get("name"), arguments=arguments)])

    def _item_done(self, obj: dict[str, Any]) -> ModelChunk | None:
        item = obj.get("item") or {}
        kind = item.get("type")
        if kind == "reasoning":
            kept = {k: item[k] for k in ("id", "summary", "encrypted_content") if item.get(k) is not None}
            kept["type"] = "reasoning"
            self.reasoning.append(kept)
            return None
        if kind == "function_call":
            index = self._calls.get(obj.get("output_index", -1))
            # a server that sent the arguments only whole, at the end
            if index is not None and index not in self._streamed_args and item.get("arguments"):
                self._streamed_args.add(index)
                return ModelChunk(tool_calls=[ToolCallDelta(index=index, arguments=item["arguments"])])
        return None

    def _completed(self, response: dict[str, Any]) -> None:
        self.done = True
        usage = response.get("usage")
        if usage:
            total_in = usage.get("input_tokens") or 0
            cached = (usage.get("input_tokens_details") or {}).get("cached_tokens") or 0
            self.usage = Usage.of(input=max(0, total_in - cached), output=usage.get("output_tokens") or 0,
                                  cache_read=cached)
        reason = (response.get("incomplete_details") or {}).get("reason")
        if response.get("status") == "incomplete" and reason:
            self.finish_reason = "length" if reason == "max_output_tokens" else str(reason)
        else:
            self.finish_reason = "tool_calls" if self._calls else "stop"

    def finish(self) -> ModelChunk | None:
        if not self.done:
            raise IncompleteStream("the stream ended before the response completed")
        extra = {REASONING_ITEMS: self.reasoning} if self.reasoning else {}
        return ModelChunk(usage=self.usage, finish_reason=self.finish_reason, extra=extra)


def _failure(error: dict[str, Any]) -> StreamFailure:
    code = str(error.get("code") or error.get("type") or "server_error")
    status = 429 if code in ("rate_limit_exceeded", "insufficient_quota") else 400 if code.startswith("invalid") else 500
    return StreamFailure(status, code, str(error.get("message") or ""))
