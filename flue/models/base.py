"""The model provider contract (public) and the streamed chunk types.

A :class:`ModelProvider` turns a :class:`ModelRequest` (OpenAI chat-format
messages, OpenAI function specs, a thinking level) into an async stream of
:class:`ModelChunk` values: text and thinking deltas as they arrive, tool-call
fragments (OpenAI shape: ``index``, ``id``/``name`` on the first fragment,
``arguments`` split over many), a final ``usage`` and a ``finish_reason``.

``finish_reason`` uses OpenAI's words whatever the wire protocol: ``stop``,
``tool_calls``, ``length`` (the output limit was hit), ``content_filter``.

Flue's own aiohttp clients speak ``openai-completions``, ``openai-responses``
and ``anthropic-messages`` (``flue.models.openai_completions`` and its
siblings); other providers go through litellm (``flue.models.litellm_provider``).
The scripted test model (``flue.testing.ScriptedModel``) and plugins
registering objects through ``flue_model_providers`` implement this protocol
directly.

:class:`StreamAccumulator` assembles a stream into one assistant message.
Provider-specific data that must go back to the same provider on the next
turn (Anthropic's signed ``thinking_blocks``, the Responses API's encrypted
``reasoning_items``) rides on that message through ``ModelChunk.extra``; each
client sends what it understands and strips the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from flue.usage import Usage

ThinkingLevel = Literal["off", "minimal", "low", "medium", "high", "xhigh"]
THINKING_LEVELS: tuple[str, ...] = ("off", "minimal", "low", "medium", "high", "xhigh")


class ModelRequest(BaseModel):
    """One model round trip. ``model`` is the part after ``provider/``.

    ``thinking`` None means Flue's default level, ``medium``; it reaches only models
    that reason. ``cache_key`` is a stable id of the conversation (Flue's affinity
    key), sent as OpenAI's ``prompt_cache_key`` so its turns hit the same prompt cache.
    """

    provider: str
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)
    thinking: ThinkingLevel | None = None
    max_tokens: int | None = None
    cache_key: str | None = None

    @property
    def spec(self) -> str:
        return f"{self.provider}/{self.model}"


# Chunks are plain dataclasses, not pydantic models: a turn makes one per streamed delta,
# and they never cross a trust boundary (providers build them, the loop reads them).
@dataclass(slots=True)
class ToolCallDelta:
    """A fragment of a tool call; fragments with the same ``index`` belong together."""

    index: int = 0
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(slots=True)
class ModelChunk:
    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCallDelta] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    # provider-specific extras to keep on the assistant message (e.g. signed thinking blocks)
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class ModelProvider(Protocol):
    """Implement ``stream`` as an async generator yielding :class:`ModelChunk`.

    Cancellation: when the consuming task is cancelled, ``CancelledError`` is
    raised at the generator's current ``await``; release the connection in a
    ``finally`` block. The harness calls ``aclose()`` on the stream when it
    stops reading early.
    """

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]: ...


class AssembledToolCall(BaseModel):
    id: str
    name: str
    arguments: str = ""


class StreamAccumulator:
    """Collects chunks into the assistant message of one turn."""

    def __init__(self) -> None:
        self.text_parts: list[str] = []
        self.thinking_parts: list[str] = []
        self._calls: dict[int, dict[str, Any]] = {}
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.extra: dict[str, Any] = {}

    def add(self, chunk: ModelChunk) -> None:
        if chunk.text:
            self.text_parts.append(chunk.text)
        if chunk.thinking:
            self.thinking_parts.append(chunk.thinking)
        for delta in chunk.tool_calls:
            call = self._calls.setdefault(delta.index, {"id": None, "name": None, "arguments": []})
            # id and name arrive once (some providers repeat them): keep the first.
            if delta.id and not call["id"]:
                call["id"] = delta.id
            if delta.name and not call["name"]:
                call["name"] = delta.name
            if delta.arguments:
                call["arguments"].append(delta.arguments)
        if chunk.usage is not None:
            # Providers report cumulative usage for the call; the last report wins.
            self.usage = chunk.usage
        if chunk.finish_reason:
            self.finish_reason = chunk.finish_reason
        for key, value in chunk.extra.items():
            if isinstance(value, list):
                self.extra.setdefault(key, []).extend(value)
            else:
                self.extra[key] = value

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    @property
    def thinking(self) -> str:
        return "".join(self.thinking_parts)

    @property
    def tool_calls(self) -> list[AssembledToolCall]:
        out = []
        for index in sorted(self._calls):
            call = self._calls[index]
            if not call["name"]:
                continue  # a fragment without a name cannot be executed or replayed
            out.append(
                AssembledToolCall(
                    id=call["id"] or f"call_{index}", name=call["name"], arguments="".join(call["arguments"])
                )
            )
        return out

    def message(self) -> dict[str, Any]:
        """The OpenAI chat-format assistant message for the history."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        calls = self.tool_calls
        if calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
                for c in calls
            ]
        if self.thinking:
            msg["reasoning_content"] = self.thinking
        msg.update(self.extra)
        return msg


async def aclose_stream(stream: Any) -> None:
    """Close an async iterator if it supports it (async generators do)."""
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
