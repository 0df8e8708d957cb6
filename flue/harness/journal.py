"""The turn journal: what a recovering attempt replays instead of repeating.

A durable submission runs one operation. While it runs, the tool loop
(:mod:`flue.harness.loop`) records each completed step through a
:class:`Journal`, in this order for every turn ``i``:

``{"type": "model", "index": i, "message": ..., "text": ..., "usage": ..., "stopReason": ...}``
    the model's complete answer for turn ``i`` (before any of its tools run);
``{"type": "tool", "index": i, "toolCallId": ..., "output": ..., "isError": ...}``
    one finished tool call of turn ``i`` (as each one finishes);
``{"type": "turn", "index": i, "messages": [...], "state": {...}, "done": bool, "text": ...}``
    turn ``i`` is over: every message it added to the conversation.

When the process dies and another coordinator takes the submission over, the
new attempt passes the recorded entries back in (``Journal.entries``): turns
with a ``turn`` entry are restored without calling the model or any tool; in
the first unfinished turn the recorded model answer is reused and only the
tool calls without a recorded result run. A journal whose last turn ended the
loop finishes the operation without any call at all.

**What may run twice after a crash:** the model call that was streaming when
the process died or whose answer's entry was not committed yet (the entry of
the turn that ends the loop is committed with the session save that follows
it, see ``flue.runtime.instances.SubmissionJournal``), and tool calls that had
started but not finished. Everything recorded is replayed, never repeated.
Tools with outside effects should therefore be idempotent, or check before
acting. The journal's writer decides what else to keep consistent with it
(the coordinator saves the virtual sandbox's snapshot before each ``tool``
and ``turn`` entry, so restored files match the replayed results).

Entries are the pydantic models below (:data:`JournalEntry`), stored as their JSON
(camelCase, as written above); the structured-result value is not stored but
re-validated from the recorded ``finish_result`` call, so it comes back as
the same type (a pydantic model stays a model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from flue.events import Usage
from flue.models.base import AssembledToolCall


class _Entry(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    index: int

    def wire(self) -> dict[str, Any]:
        """The stored JSON form."""
        return self.model_dump(by_alias=True, mode="json")


class ModelStep(_Entry):
    """Turn ``index``'s complete model answer, recorded before any of its tools run."""

    type: Literal["model"] = "model"
    message: dict[str, Any] = Field(default_factory=lambda: {"role": "assistant", "content": None})
    text: str = ""
    usage: Usage = Field(default_factory=Usage)
    stop_reason: str | None = None


class ToolStep(_Entry):
    """One finished tool call of turn ``index``."""

    type: Literal["tool"] = "tool"
    tool_call_id: str
    output: str = ""
    is_error: bool = False


class TurnState(BaseModel):
    """The structured-result bookkeeping at the end of a turn."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
    accepted: bool = False
    failures: int = 0
    last_error: str | None = None


class TurnStep(_Entry):
    """Turn ``index`` is over: every message it added, and whether the loop ended there."""

    type: Literal["turn"] = "turn"
    messages: list[dict[str, Any]] = Field(default_factory=list)
    done: bool = False
    text: str | None = None
    usage: Usage = Field(default_factory=Usage)
    state: TurnState = Field(default_factory=TurnState)


JournalEntry = Annotated[ModelStep | ToolStep | TurnStep, Field(discriminator="type")]
_ENTRY: TypeAdapter[ModelStep | ToolStep | TurnStep] = TypeAdapter(JournalEntry)


@runtime_checkable
class Journal(Protocol):
    """Where the tool loop records completed steps, and what an earlier attempt recorded."""

    #: identifies the operation (the runtime uses the submission id)
    key: str
    #: entries recorded by earlier attempts of the same operation, in order (stored JSON)
    entries: list[dict[str, Any]]

    async def record(self, entry: dict[str, Any]) -> None:
        """Persist one entry (a :data:`JournalEntry`'s JSON). Raise to stop the operation
        (e.g. the lease was lost)."""
        ...


@dataclass
class PartialTurn:
    """A turn whose model answer was recorded but which did not finish."""

    index: int
    message: dict[str, Any]
    text: str
    usage: Usage
    stop_reason: str | None
    results: dict[str, tuple[str, bool]] = field(default_factory=dict)

    @property
    def calls(self) -> list[AssembledToolCall]:
        return calls_of(self.message)


@dataclass
class Replay:
    turns: list[TurnStep] = field(default_factory=list)  # finished turns, index 0..n-1
    partial: PartialTurn | None = None

    @property
    def empty(self) -> bool:
        return not self.turns and self.partial is None

    @property
    def tool_results(self) -> int:
        done = sum(len(calls_of(m)) for t in self.turns for m in t.messages if m.get("role") == "assistant")
        return done + (len(self.partial.results) if self.partial else 0)


def calls_of(message: dict[str, Any]) -> list[AssembledToolCall]:
    """The tool calls of an assistant message in the history's (OpenAI) shape."""
    out = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        out.append(AssembledToolCall(id=call.get("id") or "", name=fn.get("name") or "", arguments=fn.get("arguments") or ""))
    return out


def parse_entries(entries: list[dict[str, Any]]) -> list[ModelStep | ToolStep | TurnStep]:
    """The stored entries as models; one that does not parse (another version's kind) is skipped."""
    out = []
    for raw in entries:
        try:
            out.append(_ENTRY.validate_python(raw))
        except ValidationError:
            continue
    return out


def read_replay(entries: list[dict[str, Any]]) -> Replay:
    """Group recorded entries into finished turns and the unfinished one after them.

    Only a contiguous run of finished turns from index 0 counts; anything after
    a gap (which a well-behaved writer never leaves) is ignored, so the turn is
    simply run again.
    """
    models: dict[int, ModelStep] = {}
    tools: dict[int, dict[str, tuple[str, bool]]] = {}
    turns: dict[int, TurnStep] = {}
    for entry in parse_entries(entries):
        if isinstance(entry, ModelStep):
            models.setdefault(entry.index, entry)
        elif isinstance(entry, ToolStep):
            tools.setdefault(entry.index, {})[entry.tool_call_id] = (entry.output, entry.is_error)
        else:
            turns.setdefault(entry.index, entry)
    replay = Replay()
    while len(replay.turns) in turns:
        replay.turns.append(turns[len(replay.turns)])
    nxt = len(replay.turns)
    if nxt in models and not (replay.turns and replay.turns[-1].done):
        model = models[nxt]
        replay.partial = PartialTurn(index=nxt, message=model.message, text=model.text, usage=model.usage,
                                     stop_reason=model.stop_reason, results=tools.get(nxt, {}))
    return replay
