"""Automatic context compaction: summarize old turns before the conversation outgrows the model.

An agent tunes it in frontmatter (it is on by default; ``compaction: false``
turns it off)::

    compaction:
      threshold: 0.8              # compact when the request would fill 80% of the window
      keep_recent_tokens: 20000   # the newest messages kept verbatim
      context_window: 128000      # tokens; default: the model's (litellm's catalog)

Before every model call the tool loop estimates the request's size (about
four characters a token). Over ``threshold`` of the context window, the
messages before the newest ``keep_recent_tokens`` are summarized by the same
model and replaced by two messages: the summary (as a user message) and an
assistant acknowledgement. The cut never separates an assistant's tool calls
from their results. ``compaction_start`` and ``compaction`` bracket it, with
the summary's model turn (purpose ``compaction``) between them; its usage is
counted in the operation's. A model whose context window is unknown (an
uncatalogued model without ``context_window:`` in the agent or its provider
registration) is not compacted automatically.

The session keeps the compacted history once the operation succeeds (a
failed operation leaves the history as it was, as always).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flue.errors import serialize_error
from flue.events import Compaction, CompactionStart, EventSink, Turn, TurnStart, monotonic_ms
from flue.harness.errors import FlueHarnessError, ModelCallError
from flue.harness.messages import ModelRef, stop_reason
from flue.ids import new_id
from flue.models.base import ModelProvider, ModelRequest, StreamAccumulator, aclose_stream
from flue.usage import ModelPrices, Usage

SUMMARY_SYSTEM = (
    "You compress conversations. Summarize the conversation you are given so that it can continue "
    "without it: the user's goals and requests, decisions made, facts learned, files and commands "
    "involved (with their paths and outcomes), and open questions or next steps. Be complete but "
    "concise; write plain prose and lists, no preamble."
)
SUMMARY_OPEN = "Summary of the earlier conversation (it was compacted to save context):"
ACK = "Understood. I have the summary of our earlier conversation and will continue from it."
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class CompactionPolicy:
    threshold: float
    keep_recent_tokens: int
    context_window: int


def policy_for(spec: Any, known_window: int | None) -> CompactionPolicy | None:
    """The policy an agent's ``compaction`` setting asks for, or None (off, or window unknown).
    ``known_window``: the model's context window from its registration or the catalog."""
    if spec is False:
        return None
    data = spec.model_dump() if hasattr(spec, "model_dump") else dict(spec or {})
    window = data.get("context_window") or known_window
    if not window:
        return None
    return CompactionPolicy(
        threshold=float(data.get("threshold", 0.8)),
        keep_recent_tokens=int(data.get("keep_recent_tokens", 20_000)),
        context_window=int(window),
    )


def estimate_tokens(messages: list[dict[str, Any]]) -> int:
    return len(json.dumps(messages, ensure_ascii=False, default=str)) // CHARS_PER_TOKEN


def split_point(messages: list[dict[str, Any]], keep_tokens: int) -> int:
    """Index of the first message to keep: about ``keep_tokens`` of the newest messages,
    starting at a user message (so no tool result loses its call). 0: nothing to compact."""
    kept = 0
    cut = len(messages)
    for i in range(len(messages) - 1, -1, -1):
        kept += estimate_tokens([messages[i]])
        if kept >= keep_tokens:
            cut = i
            break
    else:
        return 0
    # Move to a user message at or before the cut (keeping a little more than asked).
    while cut > 0 and messages[cut].get("role") != "user":
        cut -= 1
    return cut


async def compact(
    policy: CompactionPolicy, provider: ModelProvider, model: ModelRef, system: str,
    history: list[dict[str, Any]], new: list[dict[str, Any]], sink: EventSink,
    prices: ModelPrices | None = None,
) -> Usage | None:
    """Compact ``history + new`` in place when the request is too big; the summary's usage when it did.

    Events: ``compaction_start`` (reason ``threshold``), the summary's own turn
    (``turn_start`` ... ``turn`` with purpose ``compaction``), then ``compaction``."""
    everything = [*history, *new]
    before = estimate_tokens([{"role": "system", "content": system}, *everything])
    if before <= policy.threshold * policy.context_window:
        return None
    cut = split_point(everything, policy.keep_recent_tokens)
    if cut < 2:
        return None  # the newest messages alone are this big: nothing older to summarize
    started = monotonic_ms()
    await sink.emit(CompactionStart(reason="threshold", estimated_tokens=before))
    turn_sink = sink.child(turn_id=new_id("turn"))
    await turn_sink.emit(TurnStart(purpose="compaction"))
    try:
        summary, usage, finish = await _summarize(provider, model, everything[:cut])
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        await turn_sink.emit(Turn(purpose="compaction", duration_ms=round(monotonic_ms() - started, 3),
                                  model=model.id, provider=model.provider, api=model.api, is_error=True,
                                  error=message, stop_reason="error"))
        await sink.emit(Compaction(messages_before=len(everything), messages_after=len(everything),
                                   duration_ms=round(monotonic_ms() - started, 3), is_error=True,
                                   error=serialize_error(exc)))
        raise
    if prices is not None:
        usage = prices.price(usage)
    output = {"role": "assistant", "content": [{"type": "text", "text": summary}]}
    await turn_sink.emit(Turn(purpose="compaction", duration_ms=round(monotonic_ms() - started, 3),
                              model=model.id, provider=model.provider, api=model.api, output=output, usage=usage,
                              stop_reason=stop_reason(finish)))
    head = [{"role": "user", "content": f"{SUMMARY_OPEN}\n\n{summary}"}, {"role": "assistant", "content": ACK}]
    if cut <= len(history):
        history[:] = [*head, *history[cut:]]
    else:
        new[:] = new[cut - len(history):]
        history[:] = head
    await sink.emit(Compaction(messages_before=len(everything), messages_after=len(history) + len(new),
                               duration_ms=round(monotonic_ms() - started, 3), usage=usage))
    return usage


async def _summarize(
    provider: ModelProvider, model: ModelRef, messages: list[dict[str, Any]]
) -> tuple[str, Usage, str | None]:
    transcript = "\n\n".join(_render(m) for m in messages)
    request = ModelRequest(
        provider=model.provider, model=model.id, thinking="high",  # as Flue summarizes (reasoning models only)
        messages=[{"role": "system", "content": SUMMARY_SYSTEM},
                  {"role": "user", "content": f"Summarize this conversation:\n\n{transcript}"}],
        tools=[],
    )
    acc = StreamAccumulator()
    stream = provider.stream(request)
    try:
        async for chunk in stream:
            acc.add(chunk)
    except FlueHarnessError:
        raise
    except Exception as exc:  # a provider object's own exception: its text may quote the provider
        raise ModelCallError(f"{model.provider}/{model.id}", exc, provider=model.provider) from exc
    finally:
        await aclose_stream(stream)
    return acc.text.strip() or "(the earlier conversation could not be summarized)", acc.usage or Usage(), acc.finish_reason


def _render(message: dict[str, Any]) -> str:
    role = message.get("role", "?")
    content = message.get("content")
    if isinstance(content, list):  # text and image parts
        content = " ".join(p.get("text", "[image]") for p in content if isinstance(p, dict))
    lines = [f"[{role}] {content or ''}".rstrip()]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        lines.append(f"[{role} calls {fn.get('name')}] {fn.get('arguments')}")
    return "\n".join(lines)
