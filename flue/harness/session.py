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

Every operation returns a :class:`~flue.harness.abort.CallHandle`: ``await``
it for the result, ``abort()`` it (or pass ``signal=``) to stop it (see
``flue.harness.abort``). ``role=`` on ``prompt``/``skill``/``task`` picks a
role for that call, over the session's ``role`` (``harness.session(name,
role=...)``) and the agent's default (see ``flue.agent`` for what a role is).
``skill`` takes a skill name or a skill object (a
:class:`~flue.authoring.skills.SkillDefinition`, e.g. from
:func:`flue.load_skill`): a registered one's supporting files are in the
sandbox and listed in the request; an unregistered one is run from its body
alone.

**Deletion wins.** ``session.delete()`` (or ``harness.sessions.delete(name)``)
while an operation runs stops it: it raises
:class:`~flue.harness.errors.SessionDeletedError` and records nothing, and
every later operation on this object raises it too (open the name again for
a fresh session). Flue instead refuses to delete a busy session.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import posixpath
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from flue.authoring.skills import SkillDefinition
from flue.errors import serialize_error
from flue.events import EventSink, Idle, Operation, OperationStart, TaskEvent, TaskStart, monotonic_ms
from flue.harness.abort import AbortSignal, CallControl, CallHandle
from flue.harness.compaction import policy_for
from flue.harness.errors import (
    InvalidThinkingLevelError,
    OperationCancelledError,
    SessionDeletedError,
    SkillArgumentsError,
    UnknownSkillError,
)
from flue.harness.fs import FlueFs
from flue.harness.journal import Journal
from flue.harness.loop import LoopSettings, run_loop
from flue.harness.messages import ModelRef
from flue.harness.results import RESULT_INSTRUCTIONS, jsonable, result_spec
from flue.harness.setup import AgentSetup
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
# Open persistent sessions by (session store, storage key), so a deletion reaches each of them.
_LIVE: dict[tuple[int, str], weakref.WeakSet[Session]] = {}
Signal = AbortSignal | asyncio.Event | None


def store_root(store: Any) -> Any:
    """The store a wrapper (``inner``) stores into: sessions are found by it."""
    while getattr(store, "inner", None) is not None:
        store = store.inner
    return store


def live_sessions(store: Any, key: str) -> list[Session]:
    found = _LIVE.get((id(store_root(store)), key))
    return list(found) if found is not None else []


async def mark_deleted(store: Any, key: str, error: SessionDeletedError) -> list[Session]:
    """Make every open session at ``key`` refuse to save (waiting for a save in flight);
    return them, so the caller aborts their operations once the store is updated."""
    sessions = live_sessions(store, key)
    for session in sessions:
        session._deleted = error
    for session in sessions:
        async with session._saving:  # a save that began before the mark has finished
            pass
    return sessions


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
        role: Any = None,
    ):
        self.harness = harness
        self.name = name
        self.agent = agent or harness.agent
        self.cwd = cwd or harness.cwd
        self.persist = persist
        self.role = role  # the session's default role (a name or a flue.Role); a call's role= wins
        self._parent_model = parent_model  # a task child falls back to its caller's model
        self._sink = (sink or harness.sink).child(session=name)
        data = data or SessionData()
        self._messages: list[dict[str, Any]] = list(data.messages)
        self._metadata: dict[str, Any] = dict(data.metadata)
        self._usage = Usage.model_validate(self._metadata.get("usage") or {})
        self._lock = asyncio.Lock()
        self._saving = asyncio.Lock()
        self._active: set[CallControl] = set()
        self._deleted: SessionDeletedError | None = None
        self.tool_state: dict[str, Any] = {}
        self.fs = FlueFs(harness.require_env, self.cwd)
        if persist:
            _LIVE.setdefault((id(store_root(harness.store)), self.key), weakref.WeakSet()).add(self)

    def __repr__(self) -> str:
        return f"<Session {self.name!r} of harness {self.harness.name!r}: {len(self._messages)} messages>"

    # -- state ----------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.harness.storage_key(self.name)

    @functools.cached_property
    def setup(self) -> AgentSetup:
        """The agent's system prompt, skills and tools at this session's cwd: a value the harness
        composed once in ``prepare``, read here at every call (looked up on first use)."""
        return self.harness.setup_for(self.agent, self.cwd)

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

    @property
    def deleted(self) -> bool:
        return self._deleted is not None

    async def save(self) -> None:
        if not self.persist:
            return
        async with self._saving:
            if self._deleted is not None:
                raise self._deleted
            await self.harness.store.save(self.key, self.data())

    async def delete(self) -> None:
        """Delete this session's stored history; a running operation stops (see the module docstring)."""
        await self.harness.sessions.delete(self.name)

    def _abort_all(self, error: SessionDeletedError) -> None:
        for control in list(self._active):
            control.signal.abort(error)

    # -- operations -------------------------------------------------------------------

    def prompt(
        self,
        text: str,
        *,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        images: list[Any] | None = None,
        thinking: str | None = None,
        role: Any = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
        journal: Journal | None = None,
        signal: Signal = None,
    ) -> CallHandle[OperationResult]:
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

        return self._call("prompt", signal, lambda control: self._model_op(
            "prompt", build, control,
            result=result, tools=tools, model=model, thinking=thinking, role=role, max_turns=max_turns,
            result_retries=result_retries, journal=journal,
        ))

    def skill(
        self,
        skill: str | SkillDefinition,
        *,
        args: dict[str, Any] | None = None,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        thinking: str | None = None,
        role: Any = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
        signal: Signal = None,
    ) -> CallHandle[OperationResult]:
        """Run a skill (a registered name, or a skill object): its body, rendered with Jinja2
        over ``args``, is the request."""
        if not isinstance(skill, str | SkillDefinition):
            raise TypeError(
                f"session.skill() takes a skill name or a skill object (flue.load_skill(...)), not {type(skill).__name__}"
            )
        args = dict(args or {})

        def build() -> list[dict[str, Any]]:
            return [{"role": "user", "content": self._skill_request(skill, args)}]

        return self._call("skill", signal, lambda control: self._model_op(
            "skill", build, control,
            result=result, tools=tools, model=model, thinking=thinking, role=role, max_turns=max_turns,
            result_retries=result_retries,
        ))

    def task(
        self,
        prompt: str,
        *,
        agent: str | None = None,
        cwd: str | None = None,
        result: Any = None,
        tools: list[Any] | None = None,
        model: Any = None,
        thinking: str | None = None,
        role: Any = None,
        max_turns: int | None = None,
        result_retries: int | None = None,
        signal: Signal = None,
    ) -> CallHandle[OperationResult]:
        """Delegate to a one-shot child session with its own history, on the same sandbox.

        ``agent`` names one of the agent's ``subagents:`` (its instructions, tools
        and skills are used); omitted, the child uses this session's agent. ``role``
        (a role of this session's agent, or a ``flue.Role``) applies to the child's prompt.
        """
        async def body(op_id: str, sink: EventSink, control: CallControl) -> _Output:
            child_agent = self.harness.subagent(self.agent, agent)
            task_id = new_id("task")
            task_sink = sink.child(task_id=task_id, parent_session=self.name)
            started = monotonic_ms()
            await task_sink.emit(TaskStart(prompt=prompt, agent=agent, cwd=cwd))
            try:
                picked = self._role(role)  # a role of the calling agent, resolved here
                child = await self.harness.child_session(
                    child_agent, name=f"task:{self.name}:{task_id}", cwd=cwd or self.cwd, sink=task_sink,
                    parent_model=self._call_model(None),
                )
                res = await child.prompt(
                    prompt, result=result, tools=tools, model=model, thinking=thinking, max_turns=max_turns,
                    result_retries=result_retries, role=picked.role if picked is not None else None,
                    signal=control.signal,
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

        return self._call("task", signal, lambda control: self._run_op("task", body, control))

    def shell(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None,  # noqa: ASYNC109 - the sandbox's own deadline (exit 124)
        signal: Signal = None,
    ) -> CallHandle[ExecResult]:
        """Run a command in the sandbox and record it (and its output) in the history."""

        async def body(op_id: str, sink: EventSink, control: CallControl) -> _Output:
            where = cwd or self.cwd
            res = await self.harness.exec(command, cwd=where, env=env, timeout=timeout)
            summary = {"stdout": res.stdout, "stderr": res.stderr, "exitCode": res.exit_code}
            return _Output(res, [{"role": "user", "content": _shell_transcript(command, where, res)}], None, summary)

        return self._call("shell", signal, lambda control: self._run_op("shell", body, control))

    # -- internals ----------------------------------------------------------------------

    def _call(self, kind: str, signal: Signal, run: Callable[[CallControl], Awaitable[Any]]) -> CallHandle[Any]:
        handle: CallHandle[Any] = CallHandle(run, kind=kind, session=self.name, signal=signal,
                                             on_done=self._active.discard)
        self._active.add(handle.control)
        return handle

    def _call_model(self, model: Any) -> Any:
        return self.harness.pick_model(model, self.agent, parent=self._parent_model)

    def _role(self, role: Any) -> Any:
        """The call's role (call, else session, else agent default), resolved; None for none."""
        picked = role if role is not None else self.role if self.role is not None else self.agent.role
        return self.harness.role_for(self.agent, picked, self.cwd) if picked is not None else None

    def _skill_request(self, skill: str | SkillDefinition, args: dict[str, Any]) -> str:
        skills = self.setup.skills
        name = skill if isinstance(skill, str) else skill.name
        entry = skills.get(name)
        if isinstance(skill, SkillDefinition) and (entry is None or entry.origin != skill.origin):
            # Not registered on the agent: run from its body; its files are not in the sandbox.
            entry = None
            body_source, path, files = skill.body, None, []
        elif entry is None:
            raise UnknownSkillError(name, list(skills))
        else:
            body_source, path, files = entry.body, entry.path, entry.files
        from flue.authoring.templates import TemplateFailure, render

        try:
            body = render(body_source, {**args, "args": args})
        except TemplateFailure as exc:
            raise SkillArgumentsError(name, exc.problem) from None
        folder = posixpath.dirname(path) if path else None
        where = f" (its files are in {folder})" if folder else ""
        text = f'Use the skill "{name}"{where}:\n\n{body}'
        if folder and files:
            listed = "\n".join(f"- {rel}: {posixpath.join(folder, rel)}" for rel in sorted(files))
            text += ("\n\nSupporting files of the skill, not loaded into context; read the ones you need:\n"
                     f"{listed}")
        if args:
            text += f"\n\nArguments:\n{json.dumps(jsonable(args), indent=2, ensure_ascii=False)}"
        return text

    async def _model_op(
        self,
        kind: str,
        build: Callable[[], list[dict[str, Any]]],
        control: CallControl,
        *,
        result: Any,
        tools: list[Any] | None,
        model: Any,
        thinking: str | None,
        role: Any,
        max_turns: int | None,
        result_retries: int | None,
        journal: Journal | None = None,
    ) -> OperationResult:
        async def body(op_id: str, sink: EventSink, control: CallControl) -> _Output:
            spec = result_spec(result, result_retries)
            picked = self._role(role)
            level = thinking or (picked.thinking if picked is not None else None) or self.agent.thinking
            if level is not None and level not in THINKING_LEVELS:
                raise InvalidThinkingLevelError(level)
            call_model = model if model is not None else picked.model if picked is not None else None
            resolved = self.harness.resolve_model(self._call_model(call_model), self.agent)
            system = self.setup.system
            if picked is not None and picked.preamble:
                system = f"{picked.preamble}\n\n{system}" if system else picked.preamble
            if spec is not None:
                system = f"{system}\n\n{RESULT_INSTRUCTIONS}" if system else RESULT_INSTRUCTIONS
            settings = LoopSettings(
                provider=resolved.provider,
                provider_id=resolved.provider_id,
                model=resolved.model,
                system=system,
                tools=self.setup.tools_with(tools),
                make_context=lambda call_id: self._tool_context(call_id, control.signal),
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

        return await self._run_op(kind, body, control)

    def _tool_context(self, tool_call_id: str, signal: AbortSignal | None = None) -> ToolContext:
        return ToolContext(
            env=self.harness.env, cwd=self.cwd, tool_call_id=tool_call_id, session=self, state=self.tool_state,
            signal=signal,
        )

    async def _run_op(
        self, kind: str, body: Callable[[str, EventSink, CallControl], Awaitable[_Output]], control: CallControl
    ) -> Any:
        if self._deleted is not None:
            raise self._deleted
        if control.signal.aborted:  # aborted before it began: nothing to report
            raise OperationCancelledError(None, kind, self.name, reason=control.signal.reason)
        current = _CURRENT.get()
        nested = current is not None and current[0]() is self
        async with contextlib.nullcontext() if nested else self._lock:
            if self._deleted is not None:  # deleted while it waited for the session
                raise self._deleted
            op_id = new_id("op")
            sink = self._sink.child(operation_id=op_id)
            started = monotonic_ms()
            await sink.emit(OperationStart(operation_kind=kind))  # type: ignore[arg-type]
            token = _CURRENT.set((weakref.ref(self), op_id))
            try:
                out = await body(op_id, sink, control)
            except asyncio.CancelledError as exc:
                reason = control.signal.reason if control.signal.aborted else None
                err: BaseException = (
                    reason if isinstance(reason, SessionDeletedError)
                    else OperationCancelledError(op_id, kind, self.name, reason=reason)
                )
                await _emit_quietly(sink, Operation(operation_kind=kind, duration_ms=_since(started), is_error=True,  # type: ignore[arg-type]
                                                    error=serialize_error(err)))
                await _emit_quietly(sink, Idle())
                raise err from exc
            except Exception as exc:
                await sink.emit(Operation(operation_kind=kind, duration_ms=_since(started), is_error=True,  # type: ignore[arg-type]
                                          error=serialize_error(exc)))
                await sink.emit(Idle())
                raise
            finally:
                _CURRENT.reset(token)
            control.committing = True  # from here on an abort changes nothing: the call completes
            before = (self._messages, dict(self._metadata), self._usage)
            if out.history is not None:
                self._messages = out.history
                self._metadata["compactions"] = int(self._metadata.get("compactions", 0)) + 1
            self._messages = [*self._messages, *out.messages]
            if out.usage is not None:
                self._usage = self._usage + out.usage
            self._metadata["operations"] = int(self._metadata.get("operations", 0)) + 1
            if out.journal_key is not None:
                self._metadata["lastJournal"] = {"key": out.journal_key, "result": out.summary}
            try:
                await self.save()
            except BaseException as exc:  # not stored (deleted meanwhile, a store failure): not in memory either
                self._messages, self._metadata, self._usage = before
                await _emit_quietly(sink, Operation(operation_kind=kind, duration_ms=_since(started), is_error=True,  # type: ignore[arg-type]
                                                    error=serialize_error(exc)))
                await _emit_quietly(sink, Idle())
                raise
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
