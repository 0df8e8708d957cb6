"""The ``openai-completions`` wire protocol: OpenAI's Chat Completions, streamed.

``POST <base_url>/chat/completions`` with ``stream: true`` and
``stream_options.include_usage`` (the last chunk carries token usage). Our
history already is Chat Completions messages; only the keys the protocol
defines are sent (the assistant message's ``reasoning_content``,
``thinking_blocks`` and ``reasoning_items`` stay home). Thinking arrives as
``reasoning_content`` (DeepSeek, vLLM, llama.cpp) or ``reasoning``
(OpenRouter, Ollama) deltas. The thinking level is sent as
``reasoning_effort`` to models that reason (:mod:`flue.models.thinking`).

Usage: ``prompt_tokens`` includes cached tokens (``prompt_tokens_details.
cached_tokens``, or DeepSeek's ``prompt_cache_hit_tokens``); ours does not.
"""

from __future__ import annotations

from typing import Any, ClassVar

from flue.models.base import ModelChunk, ModelRequest, ToolCallDelta
from flue.models.catalog import ModelInfo
from flue.models.native import IncompleteStream, NativeProvider, StreamFailure, StreamParser, loads
from flue.models.thinking import openai_effort
from flue.usage import Usage

_MESSAGE_KEYS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id"})
FINISH_REASONS = {"function_call": "tool_calls", "end_turn": "stop", "max_tokens": "length"}


class OpenAICompletionsProvider(NativeProvider):
    api: ClassVar[str] = "openai-completions"
    path: ClassVar[str] = "/chat/completions"

    def auth_headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if key else {}

    def body(self, request: ModelRequest, info: ModelInfo) -> dict[str, Any]:
        endpoint = self.endpoint
        body: dict[str, Any] = {
            "model": request.model,
            "messages": wire_messages(request.messages),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = request.tools
        if request.max_tokens:
            body[endpoint.max_tokens_field] = request.max_tokens
        if endpoint.reasoning_effort:
            effort = openai_effort(request.thinking, info)
            if effort is not None:
                body["reasoning_effort"] = effort
        if request.cache_key and endpoint.prompt_cache_key:
            body["prompt_cache_key"] = request.cache_key
        return body

    def parser(self, request: ModelRequest, info: ModelInfo) -> StreamParser:
        return ChatParser()


def wire_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The history as Chat Completions messages: other keys dropped, the caller's dicts untouched."""
    out = []
    for msg in messages:
        if not msg.keys() <= _MESSAGE_KEYS:
            msg = {k: v for k, v in msg.items() if k in _MESSAGE_KEYS}
        if msg.get("role") == "assistant" and msg.get("content") is None and not msg.get("tool_calls"):
            msg = {**msg, "content": ""}  # an empty turn: most servers refuse a null content here
        out.append(msg)
    return out


class ChatParser(StreamParser):
    def __init__(self) -> None:
        self.done = False
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self._slots: dict[int, int] = {}  # the provider's tool-call index -> ours
        self._ids: dict[int, str] = {}  # our index -> the call's id
        self._calls = 0

    def feed(self, event: str, data: bytes) -> ModelChunk | None:
        if data == b"[DONE]":
            self.done = True
            return None
        if self.done:
            return None
        obj = loads(data)
        if not isinstance(obj, dict):
            return None
        error = obj.get("error")
        if error and not obj.get("choices"):
            raise _failure(error)
        usage = obj.get("usage")
        if usage:
            self.usage = usage_from(usage)
        choices = obj.get("choices")
        if not choices:
            return None
        choice = choices[0]
        finish = choice.get("finish_reason")
        if finish:
            self.finish_reason = FINISH_REASONS.get(finish, finish)
        delta = choice.get("delta")
        if not delta:
            return None
        text = delta.get("content") or ""
        thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
        raw_calls = delta.get("tool_calls")
        if not (text or thinking or raw_calls):
            return None
        calls = [self._call(position, tc) for position, tc in enumerate(raw_calls)] if raw_calls else []
        return ModelChunk(text=text if isinstance(text, str) else "", thinking=thinking if isinstance(thinking, str) else "",
                          tool_calls=calls)

    def _call(self, position: int, tc: dict[str, Any]) -> ToolCallDelta:
        index = tc.get("index")
        if not isinstance(index, int):
            index = position
        call_id = tc.get("id") or None
        slot = self._slots.get(index)
        # a different id at a known index is a new call (some servers send every call at index 0)
        if slot is None or (call_id and self._ids.get(slot, call_id) != call_id):
            slot = self._slots[index] = self._calls
            self._calls += 1
        if call_id and slot not in self._ids:
            self._ids[slot] = call_id
        fn = tc.get("function") or {}
        return ToolCallDelta(index=slot, id=call_id, name=fn.get("name") or None, arguments=fn.get("arguments") or "")

    def finish(self) -> ModelChunk | None:
        if not self.done and self.finish_reason is None:
            raise IncompleteStream("the stream ended before the model finished")
        return ModelChunk(usage=self.usage, finish_reason=self.finish_reason or "stop")


def usage_from(usage: dict[str, Any]) -> Usage | None:
    prompt = usage.get("prompt_tokens") or 0
    completion = usage.get("completion_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    if not (prompt or completion):
        return None
    return Usage.of(input=max(0, prompt - cached - written), output=completion, cache_read=cached, cache_write=written)


def _failure(error: Any) -> StreamFailure:
    if not isinstance(error, dict):
        return StreamFailure(500, "server_error", str(error))
    code = error.get("code")
    status = code if isinstance(code, int) else 500
    kind = str(error.get("type") or (code if isinstance(code, str) else "") or "server_error")
    return StreamFailure(status, kind, str(error.get("message") or ""))
