"""A session: a named conversation history inside a harness, and its operations.

Operations (``prompt``, ``skill``, ``task``, ``shell``) on one session run one
at a time (a lock keeps the history linear); an operation started by a tool
of a running operation on the same session (the ``task`` tool) nests instead
of waiting. Each operation gets an ``operationId`` and emits
``operation_start`` ... ``operation`` (with its result, usage or error), then
``idle``; model operations put ``agent_start`` ... ``agent_end`` with their
turns between (see ``flue.events``).

History: OpenAI chat-format messages (``user``/``assistant``/``tool``) as
plain JSON, saved to the harness's :class:`~flue.persistence.base.SessionStore`
after every successful operation. An operation that fails or is cancelled
leaves the history exactly as it was before it started, so retrying it does
not duplicate the request. ``shell`` is recorded as a user message with the
command and its output, so the model sees it on the next turn; ``task``
records nothing in the calling session (its child session has its own
history, and a ``task`` tool call gets the answer as its tool result).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import posixpath
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from flue.errors import serialize_error
from flue.events import EventSink, Idle, Operation, OperationStart, TaskEvent, TaskStart, monotonic_ms
from flue.harness.compaction import policy_for
from flue.harness.errors import (
    InvalidThinkingLevelError,
    OperationCancelledError,
    SkillArgumentsError,
    UnknownSkillError,
)
from flue.harness.fs import FlueFs
from flue.harness.journal import Journal
from flue.harness.loop import LoopSettings, run_loop
from flue.harness.messages import ModelRef
from flue.harness.results import RESULT_INSTRUCTIONS, jsonable, result_spec
from flue.ids import new_id
from flue.models.base import THINKING_LEVELS
from flue.persistence.base import SessionData
from flue.sandbox.base import ExecResult
from flue.tools import ToolContext
from flue.usage import Usage

if TYPE_CHECKING:
    from flue.agent import Agent
    from flue.harness.harness import Harness

# (session, operation id) of the operation whose code is running, so a nested
# operation on the same session (the task tool) does not wait for its own caller.
# The session is held weakly: every timer scheduled during the operation (HTTP
# timeouts...) copies this context, and a cancelled timer keeps it until its due
# time, which would pin the session and its whole history (images too) in memory.
_CURRENT: contextvars.ContextVar[tuple[weakref.ref[Session], str] | None] = contextvars.ContextVar(
    "flue_operation", default=None
)


class OperationResult(BaseModel):
    """What ``prompt``/``skill``/``task`` return: Flue's ``PromptResponse`` (``text``,
    ``usage``, ``model``), ``data`` when a result schema was given, and our extras."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = ""
    data: Any = None
    usage: Usage = Field(default_factory=Usage)
    model: ModelRef | None = None
    turns: int = 0
    operation_id: str
    session: str
    kind: str

    def response(self, *, with_data: bool = False) -> dict[str, Any]:
        """The wire ``PromptResponse``: ``{text, usage, model: {provider, id}}`` (+ ``data``)."""
        out: dict[str, Any] = {"text": self.text, "usage": self.usage.wire()}
        if self.model is not None:
            out["model"] = self.model.wire()
        if with_data:
            out["data"] = jsonable(self.data)
        return out


class ImageInput(BaseModel):
    """An image for a prompt: base64 ``data`` with a MIME type, or a ``url``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")
    type: str = "image"
    data: str | None = None
    mime_type: str = Field("image/png", alias="mimeType")
    url: str | None = None

    def content_part(self) -> dict[str, Any]:
        url = self.url or f"data:{self.mime_type};base64,{self.data or ''}"
        return {"type": "image_url", "image_url": {"url": url}}


@dataclass
class _Output:
    value: Any
    messages: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = field(default_factory=Usage)  # None: the operation made no model call (shell)
    summary: Any = None  # JSON for the operation event's result
    journal_key: str | None = None  # the journaled operation this output finishes
    history: list[dict[str, Any]] | None = None  # the compacted history that replaces the session's


class Session:
    def __init__(
        self,
        harness: Harness,
        name: str,
        data: SessionData | None = None,
        *,
        agent: Agent | None = None,
        cwd: str | None = None,
        persist: bool = True,
        sink: EventSink | None = None,
        parent_model: Any = None,
    ):
        self.harness = harness
        self.name = name
        self.agent = agent or harness.agent
        self.cwd = cwd or harness.cwd
        self.persist = persist
        self._parent_model = parent_model  # a task child falls back to its caller's model
        self._sink = (sink or harness.sink).child(session=name)
        data = data or SessionData()
        self._messages: list[dict[str, Any]] = list(data.messages)
        self._metadata: dict[str, Any] = dict(data.metadata)
        self._usage = Usage.model_validate(self._metadata.get("usage") or {})
        self._lock = asyncio.Lock()
        self.tool_state: dict[str, Any] = {}
        self.fs = FlueFs(harness.require_env, self.cwd)

    def __repr__(self) -> str:
        return f"<Session {self.name!r} of harness {self.harness.name!r}: {len(self._messages)} messages>"

    # -- state ----------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.harness.storage_key(self.name)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """A copy of the history (OpenAI chat-format messages)."""
        return json.loads(json.dumps(self._messages))

    @property
    def metadata(self) -> dict[str, Any]:
        """A copy of the session's metadata (``usage``, ``operations``, ``lastJournal`` ...)."""
        return json.loads(json.dumps(self._metadata))

    @property
    def usage(self) -> Usage:
        """Token usage of every operation of this session so far."""
        return self._usage.model_copy()

    def data(self) -> SessionData:
        return SessionData(
            messages=self._messages,
            metadata={**self._metadata, "usage": self._usage.model_dump(by_alias=True), "agent": self.agent.name},
        )

    async def save(self) -> None:
        if self.persist:
            await self.harness.store.save(self.key, self.data())

    # -- operations -------------------------------------------------------------------

    async def prompt(
        self,
        text: str,
        *,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        images: list[Any] | None = None,
        thinking: str | None = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
        journal: Journal | None = None,
    ) -> OperationResult:
        """Send a message; run turns (and tools) until the model is done.

        ``result``: a pydantic model (or any type pydantic understands) or a JSON
        Schema mapping; the validated value is returned in ``.data``.

        ``journal`` (the runtime's durable submissions use it): record each
        completed step there and replay what an earlier attempt recorded (see
        :mod:`flue.harness.journal`). On success the session's metadata
        ``lastJournal`` holds ``{"key": journal.key, "result": ...}``, saved with
        the history in one write, so a recovering attempt can tell the
        operation already finished.
        """

        def build() -> list[dict[str, Any]]:
            return [_user_message(text, images)]

        return await self._model_op(
            "prompt", build,
            result=result, tools=tools, model=model, thinking=thinking, max_turns=max_turns,
            result_retries=result_retries, journal=journal,
        )

    async def skill(
        self,
        name: str,
        *,
        args: dict[str, Any] | None = None,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        thinking: str | None = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
    ) -> OperationResult:
        """Run a registered skill: its body, rendered with Jinja2 over ``args``, is the request."""
        args = dict(args or {})

        def build() -> list[dict[str, Any]]:
            return [{"role": "user", "content": self._skill_request(name, args)}]

        return await self._model_op(
            "skill", build,
            result=result, tools=tools, model=model, thinking=thinking, max_turns=max_turns,
            result_retries=result_retries,
        )

    async def task(
        self,
        prompt: str,
        *,
        agent: str | None = None,
        cwd: str | None = None,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        thinking: str | None = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
    ) -> OperationResult:
        """Delegate to a one-shot child session with its own history, on the same sandbox.

        ``agent`` names one of the agent's ``subagents:`` (its instructions, tools
        and skills are used); omitted, the child uses this session's agent.
        """
        async def body(op_id: str, sink: EventSink) -> _Output:
            child_agent = self.harness.subagent(self.agent, agent)
            task_id = new_id("task")
            task_sink = sink.child(task_id=task_id, parent_session=self.name)
            started = monotonic_ms()
            await task_sink.emit(TaskStart(prompt=prompt, agent=agent, cwd=cwd))
            try:
                child = await self.harness.child_session(
                    child_agent, name=f"task:{self.name}:{task_id}", cwd=cwd or self.cwd, sink=task_sink,
                    parent_model=self._call_model(None),
                )
                res = await child.prompt(
                    prompt, result=result, tools=tools, model=model, thinking=thinking, max_turns=max_turns,
                    result_retries=result_retries,
                )
            except BaseException as exc:
                await _emit_quietly(task_sink, TaskEvent(agent=agent, is_error=True, result=serialize_error(exc),
                                                         duration_ms=round(monotonic_ms() - started, 3)))
                raise
            summary = res.response(with_data=result is not None)
            await task_sink.emit(TaskEvent(agent=agent, result=summary, duration_ms=round(monotonic_ms() - started, 3)))
            value = OperationResult(
                text=res.text, data=res.data, usage=res.usage, model=res.model, turns=res.turns, operation_id=op_id,
                session=self.name, kind="task",
            )
            return _Output(value, [], res.usage, summary)

        return await self._run_op("task", body)

    async def shell(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None  # noqa: ASYNC109 - the sandbox's own deadline (exit 124)
    ) -> ExecResult:
        """Run a command in the sandbox and record it (and its output) in the history."""

        async def body(op_id: str, sink: EventSink) -> _Output:
            where = cwd or self.cwd
            res = await self.harness.exec(command, cwd=where, env=env, timeout=timeout)
            summary = {"stdout": res.stdout, "stderr": res.stderr, "exitCode": res.exit_code}
            return _Output(res, [{"role": "user", "content": _shell_transcript(command, where, res)}], None, summary)

        return await self._run_op("shell", body)

    # -- internals ----------------------------------------------------------------------

    def _call_model(self, model: Any) -> Any:
        return self.harness.pick_model(model, self.agent, parent=self._parent_model)

    def _skill_request(self, name: str, args: dict[str, Any]) -> str:
        skills = self.harness.skills_for(self.agent, self.cwd)
        entry = skills.get(name)
        if entry is None:
            raise UnknownSkillError(name, list(skills))
        from jinja2 import TemplateError

        from flue.authoring.templates import render

        try:
            body = render(entry.body, {**args, "args": args})
        except TemplateError as exc:
            raise SkillArgumentsError(name, str(exc)) from None
        where = f" (its files are in {posixpath.dirname(entry.path)})" if entry.path else ""
        text = f'Use the skill "{name}"{where}:\n\n{body}'
        if args:
            text += f"\n\nArguments:\n{json.dumps(jsonable(args), indent=2, ensure_ascii=False)}"
        return text

    async def _model_op(
        self,
        kind: str,
        build: Callable[[], list[dict[str, Any]]],
        *,
        result: Any,
        tools: list[Any] | None,
        model: Any,
        thinking: str | None,
        max_turns: int | None,
        result_retries: int | None,
        journal: Journal | None = None,
    ) -> OperationResult:
        async def body(op_id: str, sink: EventSink) -> _Output:
            spec = result_spec(result, result_retries)
            level = thinking or self.agent.thinking
            if level is not None and level not in THINKING_LEVELS:
                raise InvalidThinkingLevelError(level)
            resolved = self.harness.resolve_model(self._call_model(model), self.agent)
            system = self.harness.system_prompt_for(self.agent, self.cwd)
            if spec is not None:
                system = f"{system}\n\n{RESULT_INSTRUCTIONS}" if system else RESULT_INSTRUCTIONS
            settings = LoopSettings(
                provider=resolved.provider,
                provider_id=resolved.provider_id,
                model=resolved.model,
                system=system,
                tools=self.harness.tools_for(self.agent, tools),
                make_context=self._tool_context,
                result=spec,
                thinking=level,
                max_turns=max_turns or self.agent.turn_limit,
                journal=journal,
                compaction=policy_for(self.agent.compaction, resolved.info.context_window),
                prices=resolved.info.cost,
                api=resolved.api,
                announce_input=journal is None,  # a durable submission's input is its submission_admitted
            )
            new = build()
            history = list(self._messages)  # compaction may rewrite it; kept only if the operation succeeds
            outcome = await run_loop(settings, history, new, sink)
            value = OperationResult(
                text=outcome.text, data=outcome.data, usage=outcome.usage, model=settings.ref, turns=outcome.turns,
                operation_id=op_id, session=self.name, kind=kind,
            )
            summary = value.response(with_data=spec is not None)
            return _Output(value, new, outcome.usage, summary, journal.key if journal is not None else None,
                           history if history != self._messages else None)

        return await self._run_op(kind, body)

    def _tool_context(self, tool_call_id: str) -> ToolContext:
        return ToolContext(
            env=self.harness.env, cwd=self.cwd, tool_call_id=tool_call_id, session=self, state=self.tool_state
        )

    async def _run_op(self, kind: str, body: Callable[[str, EventSink], Awaitable[_Output]]) -> Any:
        current = _CURRENT.get()
        nested = current is not None and current[0]() is self
        async with contextlib.nullcontext() if nested else self._lock:
            op_id = new_id("op")
            sink = self._sink.child(operation_id=op_id)
            started = monotonic_ms()
            await sink.emit(OperationStart(operation_kind=kind))  # type: ignore[arg-type]
            token = _CURRENT.set((weakref.ref(self), op_id))
            try:
                out = await body(op_id, sink)
            except asyncio.CancelledError as exc:
                err = OperationCancelledError(op_id, kind, self.name)
                await _emit_quietly(sink, Operation(operation_kind=kind, duration_ms=_since(started), is_error=True,  # type: ignore[arg-type]
                                                    error=err.to_dict()))
                await _emit_quietly(sink, Idle())
                raise err from exc
            except Exception as exc:
                await sink.emit(Operation(operation_kind=kind, duration_ms=_since(started), is_error=True,  # type: ignore[arg-type]
                                          error=serialize_error(exc)))
                await sink.emit(Idle())
                raise
            finally:
                _CURRENT.reset(token)
            if out.history is not None:
                self._messages = out.history
                self._metadata["compactions"] = int(self._metadata.get("compactions", 0)) + 1
            self._messages.extend(out.messages)
            if out.usage is not None:
                self._usage = self._usage + out.usage
            self._metadata["operations"] = int(self._metadata.get("operations", 0)) + 1
            if out.journal_key is not None:
                self._metadata["lastJournal"] = {"key": out.journal_key, "result": out.summary}
            await self.save()
            await sink.emit(Operation(operation_kind=kind, duration_ms=_since(started), result=out.summary,  # type: ignore[arg-type]
                                      usage=out.usage))
            await sink.emit(Idle())
            return out.value


def _since(started: float) -> float:
    return round(monotonic_ms() - started, 3)


def _user_message(text: str, images: list[Any] | None) -> dict[str, Any]:
    if not images:
        return {"role": "user", "content": text}
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        img = image if isinstance(image, ImageInput) else ImageInput.model_validate(image)
        parts.append(img.content_part())
    return {"role": "user", "content": parts}


def _shell_transcript(command: str, cwd: str, res: ExecResult) -> str:
    lines = [f"I ran a shell command in {cwd}:", f"$ {command}", f"exit code: {res.exit_code}"]
    if res.stdout:
        lines += ["stdout:", res.stdout.rstrip("\n")]
    if res.stderr:
        lines += ["stderr:", res.stderr.rstrip("\n")]
    return "\n".join(lines)


async def _emit_quietly(sink: EventSink, event: Any) -> None:
    """Emit while unwinding (cancellation, errors): never mask the original exception."""
    with contextlib.suppress(Exception):
        await sink.emit(event)
