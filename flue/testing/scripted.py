"""Scripted models: deterministic model turns for tests, with no network.

A script is a list of :class:`ScriptedTurn` values, one per model call, in
order. A turn may also be a function ``(request) -> ScriptedTurn`` to answer
from what was sent (for example, echoing a tool result back)::

    from flue.testing import ScriptedModel, reply, calls, tool_call

    model = ScriptedModel([
        calls(tool_call("add", {"a": 1, "b": 2})),   # turn 1: call a tool
        reply("The sum is 3."),                       # turn 2: answer
    ])
    agent = flue.create_agent(name="calc", model=model, tools=[add])

:class:`ScriptedModel` implements :class:`flue.models.base.ModelProvider` in
process. The same turns drive :class:`flue.testing.ScriptedModelServer`, an
HTTP server speaking the Chat Completions, Responses and Anthropic Messages
protocols, which exercises the real model clients (native and litellm).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from pydantic import BaseModel, Field

from flue.errors import FlueError
from flue.models.base import ModelChunk, ModelRequest, ToolCallDelta
from flue.usage import Usage


class ScriptExhaustedError(AssertionError, FlueError):
    """The code under test made more model calls than the script has turns (one of Flue's
    own errors: its message reaches callers as it is)."""

    error_type = "operation_failed"


class ScriptedToolCall(BaseModel):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)  # a str is sent verbatim (e.g. bad JSON)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


class ScriptedTurn(BaseModel):
    """What the model does in one call."""

    text: str = ""
    thinking: str = ""
    tool_calls: list[ScriptedToolCall] = Field(default_factory=list)
    # token usage reported at the end; by default derived from the sizes of request and reply
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int = 0
    cached_tokens: int = Field(0, ge=0, description="of the prompt tokens, how many came from the prompt cache")
    cache_write_tokens: int = Field(
        0, ge=0, description="of the prompt tokens, how many were written to the prompt cache (reported as such by "
        "the Anthropic format; the OpenAI formats count them as plain input)",
    )
    signature: str | None = Field(None, description="HTTP server: the thinking's signature (Anthropic) or "
                                  "encrypted reasoning (Responses); default sig-<n> / enc-<n>")
    redacted_thinking: str | None = Field(None, description="HTTP server, Anthropic: a redacted_thinking block's data")
    finish_reason: str | None = None
    chunk_size: int = Field(4, ge=1, description="characters per text delta")
    delay: float = Field(0.0, ge=0, description="seconds to wait before each chunk")
    hang: bool = Field(False, description="after the text, keep the stream open until the client goes away")
    hang_timeout: float = Field(10.0, gt=0, description="upper bound on a hang, so tests stay bounded")
    # HTTP server only: answer with this status and the protocol's error body instead
    error_status: int | None = None
    error_message: str = "scripted error"
    retry_after: float | None = Field(None, ge=0, description="with error_status: the Retry-After header, seconds")
    echo_request: bool = Field(False, description="with error_status: the error message quotes the request's "
                               "headers (Authorization and x-api-key included), as providers that echo request data do")

    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.tool_calls else "stop")

    def usage_for(self, messages: list[dict[str, Any]]) -> Usage:
        prompt = self.prompt_tokens if self.prompt_tokens is not None else max(1, len(json.dumps(messages)) // 4)
        produced = self.text + self.thinking + "".join(c.arguments_json() for c in self.tool_calls)
        completion = self.completion_tokens if self.completion_tokens is not None else max(1, len(produced) // 4)
        cached = min(self.cached_tokens, prompt)
        written = min(self.cache_write_tokens, prompt - cached)
        return Usage.of(input=prompt - cached - written, output=completion, cache_read=cached, cache_write=written)

    def text_pieces(self) -> list[str]:
        return _split(self.text, self.chunk_size)

    def thinking_pieces(self) -> list[str]:
        return _split(self.thinking, self.chunk_size)


TurnSource = ScriptedTurn | Callable[[dict[str, Any]], ScriptedTurn]


def reply(text: str, **options: Any) -> ScriptedTurn:
    """A turn that answers with text."""
    return ScriptedTurn(text=text, **options)


def tool_call(name: str, arguments: dict[str, Any] | str | None = None, *, id: str | None = None) -> ScriptedToolCall:
    return ScriptedToolCall(name=name, arguments={} if arguments is None else arguments, id=id)


def calls(*tool_calls: ScriptedToolCall, text: str = "", **options: Any) -> ScriptedTurn:
    """A turn that calls one or more tools (in parallel), optionally with some text first."""
    return ScriptedTurn(text=text, tool_calls=list(tool_calls), **options)


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def split_arguments(arguments: str, parts: int = 3) -> list[str]:
    """Split a JSON string into ``parts`` fragments, like providers stream them."""
    if len(arguments) < parts:
        return [arguments]
    step = -(-len(arguments) // parts)
    return [arguments[i : i + step] for i in range(0, len(arguments), step)]


class Script:
    """The ordered turns of a scripted model, shared by the in-process and HTTP variants."""

    def __init__(self, turns: list[TurnSource] | None = None):
        self._turns: list[TurnSource] = list(turns or [])
        self.calls = 0

    def add(self, *turns: TurnSource) -> None:
        self._turns.extend(turns)

    @property
    def remaining(self) -> int:
        return len(self._turns)

    def next(self, body: dict[str, Any]) -> ScriptedTurn:
        self.calls += 1
        if not self._turns:
            raise ScriptExhaustedError(
                f"scripted model: call #{self.calls} has no scripted turn left (add more turns to the script)"
            )
        turn = self._turns.pop(0)
        return turn if isinstance(turn, ScriptedTurn) else turn(body)


class ScriptedModel:
    """An in-process :class:`~flue.models.base.ModelProvider` playing a script.

    ``requests`` records every :class:`ModelRequest` received; ``cancelled``
    counts streams that were closed before they finished.
    """

    def __init__(self, turns: list[TurnSource] | None = None, *, name: str = "scripted"):
        self.script = Script(turns)
        self.name = name
        self.requests: list[ModelRequest] = []
        self.cancelled = 0
        self.started = asyncio.Event()  # set when a stream begins (for cancellation tests)

    def add(self, *turns: TurnSource) -> None:
        self.script.add(*turns)

    @property
    def model(self) -> str:
        """A model string for agents using this object through a provider registration."""
        return f"{self.name}/model"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        self.requests.append(request)
        turn = self.script.next(request.model_dump(mode="json"))
        self.started.set()
        finished = False
        try:
            for piece in turn.thinking_pieces():
                await _pause(turn.delay)
                yield ModelChunk(thinking=piece)
            for piece in turn.text_pieces():
                await _pause(turn.delay)
                yield ModelChunk(text=piece)
            if turn.hang:
                await asyncio.sleep(turn.hang_timeout)
            for index, call in enumerate(turn.tool_calls):
                pieces = split_arguments(call.arguments_json())
                for n, piece in enumerate(pieces):
                    await _pause(turn.delay)
                    yield ModelChunk(
                        tool_calls=[
                            ToolCallDelta(
                                index=index,
                                id=(call.id or f"call_{self.script.calls}_{index}") if n == 0 else None,
                                name=call.name if n == 0 else None,
                                arguments=piece,
                            )
                        ]
                    )
            yield ModelChunk(finish_reason=turn.finish(), usage=turn.usage_for(request.messages))
            finished = True
        finally:
            if not finished:
                self.cancelled += 1


async def _pause(delay: float) -> None:
    if delay:
        await asyncio.sleep(delay)
