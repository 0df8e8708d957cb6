"""``init(agent)`` -> :class:`Harness`: one sandbox env, tools, skills and sessions.

::

    harness = await flue.init("support")            # agents/support.md of the project here
    session = await harness.session()                # get-or-create "default"
    reply = await session.prompt("Hello!")
    print(reply.text, reply.usage.total_tokens, reply.usage.cost.total)

``init`` accepts an agent name (looked up in ``project=`` or the project in
the current directory), an :class:`~flue.authoring.agents.AgentDefinition` or
an :class:`~flue.agent.Agent`. At ``init`` the sandbox env is created once
(shared by every session and task of the harness), the agent's packaged
skills are written into it (for the host-filesystem ``local`` sandbox: into a
private temporary folder instead, see ``flue.harness.context``), ``AGENTS.md``
and workspace skills are read from its cwd, and tool names are resolved (an
unknown name fails here, not on the first call). The harness's cwd is the
env's: the agent's ``cwd``, or the sandbox kind's default when unset.

``init`` also takes a :class:`~flue.agent.CreatedAgent` (``create_agent(fn)``)
or the name of a Python agent module (``agents/<name>.py``): its initializer
runs here, every time, with ``ctx.id`` = ``harness.id`` (``id=``, else the
last part of ``scope``: the instance id of ``agents/<name>/<id>``, the run id
of ``runs/<runId>``). ``harness.session(name, role=...)`` opens a session
with a default role; ``harness.shell(...)`` returns a
:class:`~flue.harness.abort.CallHandle` like the session operations.

``await harness.close()`` releases what ``init`` acquired (idempotent); a
harness that is simply dropped leaks nothing but that temporary folder and
whatever the env itself holds. Models are resolved per call, so a harness of an agent with
``model: false`` can be created and used for shell work without a model.

Events: every event of the harness goes to ``sink`` (a child of it stamped
with ``harness`` and ``agentName``; without a ``sink``, a new root; a root
numbers the events, ``eventIndex``). When a project is known and no ``sink`` is
passed, its ``flue_observe`` plugins receive them too (``observe=True`` forces
this for a caller's sink that does not forward to observers itself). Sessions are stored under
``<scope>/<harness name>/<session name>`` in ``session_store`` (an in-memory
dict store by default).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flue.agent import Agent, AgentContext, Role, initialize_agent, resolve_agent
from flue.authoring.skills import SkillDefinition
from flue.events import EventSink, Log
from flue.harness.abort import AbortSignal, CallHandle
from flue.harness.context import (
    SkillEntry,
    WorkspaceContext,
    compose_system_prompt,
    discover_workspace,
    install_packaged_skills,
    instruction_variables,
    render_instructions,
)
from flue.harness.errors import (
    InvalidModelError,
    ModelNotConfiguredError,
    SandboxUnavailableError,
    SessionDeletedError,
    SessionExistsError,
    SessionNotFoundError,
    UnknownRoleError,
    UnknownSkillError,
    UnknownSubagentError,
)
from flue.harness.fs import FlueFs
from flue.harness.observers import observer_subscriber
from flue.harness.sandbox import create_env
from flue.harness.session import Session, mark_deleted
from flue.harness.setup import AgentSetup
from flue.harness.store import MemorySessionStore
from flue.harness.toolset import add_tools, agent_tools, builtin_tools, plugin_tools
from flue.instance import InstanceInfo, instance_info
from flue.models.base import ModelProvider
from flue.models.registry import ModelRegistry, Registration, ResolvedModel
from flue.persistence.base import SessionData, SessionStore
from flue.sandbox.base import ExecResult, SandboxEnv
from flue.stream_paths import instance_path
from flue.tools import Tool

if TYPE_CHECKING:
    import pluggy

    from flue.project import Project
    from flue.registries import Registries


class RoleView:
    """A role resolved for one agent and cwd: its rendered preamble, model and thinking."""

    def __init__(self, name: str, role: Role, preamble: str):
        self.name = name
        self.role = role
        self.preamble = preamble
        self.model = role.model
        self.thinking = role.thinking


class Sessions:
    """``harness.sessions``: strict session management."""

    def __init__(self, harness: Harness):
        self._harness = harness
        self._open: dict[str, Session] = {}
        self._lock = asyncio.Lock()

    async def get(self, name: str = "default", *, role: Any = None) -> Session:
        """Load an existing session; raise :class:`SessionNotFoundError` if there is none."""
        async with self._lock:
            session = await self._load(name)
        if session is None:
            raise SessionNotFoundError(name)
        return self._with_role(session, role)

    async def create(self, name: str = "default", *, role: Any = None) -> Session:
        """Create a new session; raise :class:`SessionExistsError` if it exists."""
        async with self._lock:
            if await self._load(name) is not None:
                raise SessionExistsError(name)
            return self._with_role(await self._new(name), role)

    async def delete(self, name: str = "default") -> None:
        """Delete a session's stored history. No-op when it does not exist. Deletion wins
        over work in flight: an operation running on the session stops with
        :class:`SessionDeletedError` and records nothing (in a durable agent instance the
        session store records a deletion marker, see ``flue.runtime.deletion``)."""
        key = self._harness.storage_key(name)
        error = SessionDeletedError(name)
        live = await mark_deleted(self._harness.store, key, error)
        async with self._lock:
            self._open.pop(name, None)
            await self._harness.store.delete(key)
        for session in live:
            session._abort_all(error)

    async def get_or_create(self, name: str = "default", *, role: Any = None, store_new: bool = True) -> Session:
        """``store_new=False``: a new session is stored by its first operation's commit, not now
        (an agent instance's submission: nothing else opens that session while it runs)."""
        async with self._lock:
            session = await self._load(name) or await self._new(name, store=store_new)
        return self._with_role(session, role)

    def close(self) -> None:
        """The harness closed: forget the open sessions and the harness (no cycle back to it)."""
        self._open.clear()
        self._harness = None  # type: ignore[assignment]

    def _with_role(self, session: Session, role: Any) -> Session:
        if role is not None:
            self._harness.role_for(session.agent, role, session.cwd)  # an unknown role fails here, not later
            session.role = role
        return session

    async def _load(self, name: str) -> Session | None:
        if name in self._open:
            return self._open[name]
        data = await self._harness.store.load(self._harness.storage_key(name))
        if data is None:
            return None
        session = Session(self._harness, name, data)
        self._open[name] = session
        return session

    async def _new(self, name: str, *, store: bool = True) -> Session:
        session = Session(self._harness, name, SessionData())
        if store:
            await session.save()  # so that it exists for other harnesses on the same store
        self._open[name] = session
        return session


class Harness:
    def __init__(
        self,
        *,
        name: str,
        agent: Agent,
        project: Project | None,
        pm: pluggy.PluginManager | None,
        env: SandboxEnv | None,
        env_missing: str,
        sink: EventSink,
        store: SessionStore,
        scope: str,
        registry: ModelRegistry,
        extra_tools: list[Tool],
        registries: Registries,
        instance: InstanceInfo | None = None,
        id: str = "local",
    ):
        self.id = id  # the agent instance id (the run id in a workflow): what initializers see as ctx.id
        self.name = name
        # the agent instance it runs for (instructions' {{ instance }}, ToolContext.instance)
        self.instance = instance or InstanceInfo(id=id, agent=agent.name)
        self.agent = agent
        self.project = project
        self.pm = pm
        self.env = env
        self._env_missing = env_missing
        self.sink = sink
        self.store = store
        self.scope = scope
        self.registry = registry
        self._extra_tools = extra_tools
        self.registries = registries  # the project's (or the built-ins') hook registrations
        self._plugin_tools = plugin_tools(registries.tools)
        self._setups: dict[tuple[str, str], AgentSetup] = {}
        self._roles: dict[tuple[str, str, str], RoleView] = {}
        self.cwd = env.cwd if env is not None and getattr(env, "cwd", None) else agent.working_dir
        self.sessions = Sessions(self)
        self.fs = FlueFs(self.require_env, self.cwd)
        self._skills_tmp: str | None = None  # packaged skills of a host sandbox (see flue.harness.context)
        self._mcp: dict[str, tuple[Any, list[Tool]]] = {}  # "<server> <url>" -> (connection, its tools)
        self._closed = False

    def __repr__(self) -> str:
        return f"<Harness {self.name!r} agent={self.agent.name!r} scope={self.scope!r}>"

    # -- public -----------------------------------------------------------------------

    async def session(self, name: str = "default", *, role: Any = None) -> Session:
        """Get or create a named session; ``role`` (a role name of the agent, or a
        :class:`~flue.agent.Role`) becomes its default role for every call."""
        return await self.sessions.get_or_create(name, role=role)

    def shell(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None,  # noqa: ASYNC109 - the sandbox's own deadline (exit 124)
        signal: AbortSignal | asyncio.Event | None = None,
    ) -> CallHandle[ExecResult]:
        """Run a command in the sandbox, outside any transcript."""
        return CallHandle(lambda _control: self.exec(command, cwd=cwd or self.cwd, env=env, timeout=timeout),
                          kind="shell", signal=signal)

    @property
    def system_prompt(self) -> str:
        return self.setup_for(self.agent, self.cwd).system

    @property
    def skills(self) -> dict[str, SkillEntry]:
        return dict(self.setup_for(self.agent, self.cwd).skills)

    @property
    def tools(self) -> dict[str, Tool]:
        return dict(self.setup_for(self.agent, self.cwd).tools)

    # -- used by sessions -----------------------------------------------------------------

    def storage_key(self, session: str) -> str:
        return f"{self.scope}/{self.name}/{session}"

    def require_env(self) -> SandboxEnv:
        if self.env is None:
            raise SandboxUnavailableError(self.agent.name, self._env_missing)
        return self.env

    async def exec(self, command: str, *, cwd: str, env: dict[str, str] | None, timeout: float | None) -> ExecResult:  # noqa: ASYNC109
        return await self.require_env().exec(command, cwd=cwd, env=env, timeout=timeout)

    def pick_model(self, call_model: Any, agent: Agent, *, parent: Any = None) -> Any:
        """The model candidate for a call: call site, then agent, then the calling session's."""
        if call_model is not None:
            return call_model
        if agent.model is not None:
            return agent.model
        return parent

    def resolve_model(self, candidate: Any, agent: Agent) -> ResolvedModel:
        if candidate is False:
            raise ModelNotConfiguredError(agent.name, explicit_false=True)
        if candidate is None:
            candidate = self.project.config.default_model() if self.project is not None else None
            if candidate is None:
                raise ModelNotConfiguredError(agent.name)
        if isinstance(candidate, str):
            return self.registry.resolve(candidate)
        if isinstance(candidate, ModelProvider):
            return ResolvedModel(getattr(candidate, "name", None) or "custom", "model", candidate)
        raise InvalidModelError(candidate)

    def setup_for(self, agent: Agent, cwd: str) -> AgentSetup:
        """The agent's setup at ``cwd`` (made by :meth:`prepare`); a cwd never prepared shares the
        agent's prepared one."""
        setup = self._setups.get((agent.name, cwd))
        return setup if setup is not None else self._setups_by_agent(agent)

    def role_for(self, agent: Agent, role: Any, cwd: str) -> RoleView:
        """Resolve a role (a name among ``agent.roles``, or a :class:`Role`) for a call."""
        if isinstance(role, Role):
            return RoleView("(call)", role, self._render_role(agent, "(call)", role.instructions, cwd))
        if not isinstance(role, str):
            raise TypeError(f"role= must be a role name or a flue.Role, not {type(role).__name__}")
        key = (agent.name, role, cwd)
        view = self._roles.get(key)
        if view is None:
            if role not in agent.roles:
                raise UnknownRoleError(role, agent.name, list(agent.roles))
            resolved = self._role_value(agent, role, agent.roles[role])
            view = RoleView(role, resolved, self._render_role(agent, role, resolved.instructions, cwd))
            self._roles[key] = view
        return view

    def _role_value(self, agent: Agent, name: str, spec: Any) -> Role:
        """A declared role as a :class:`Role`: a string, a Role, a ``RoleSpec`` or a profile."""
        if isinstance(spec, str):
            return Role(instructions=spec)
        if isinstance(spec, Role):
            return spec
        if isinstance(spec, Agent):
            return Role(instructions=spec.instructions, description=spec.description, model=spec.model,
                        thinking=spec.thinking)
        own = Role(instructions=spec.instructions, description=spec.description, model=spec.model, thinking=spec.thinking)
        if spec.profile is None:
            return own
        base = resolve_agent(spec.profile, self.project)
        text = "\n\n".join(p for p in (base.instructions.strip(), own.instructions.strip()) if p)
        return Role(instructions=text, description=own.description or base.description,
                    model=own.model if own.model is not None else base.model,
                    thinking=own.thinking or base.thinking)

    def _render_role(self, agent: Agent, name: str, text: str, cwd: str) -> str:
        from flue.authoring.templates import TemplateFailure, render
        from flue.harness.errors import InstructionsTemplateError

        try:
            return render(text or "", instruction_variables(agent, cwd, self.instance)).strip()
        except TemplateFailure as exc:
            raise InstructionsTemplateError(f"{agent.name}' role '{name}", exc.problem) from None

    def subagent(self, agent: Agent, name: str | None) -> Agent:
        if name is None:
            return agent
        names = []
        for sub in agent.subagents:
            sub_name = sub if isinstance(sub, str) else getattr(sub, "name", None)
            names.append(sub_name)
            if sub_name == name:
                return resolve_agent(sub, self.project)
        raise UnknownSubagentError(name, agent.name, [n for n in names if n])

    async def child_session(
        self, agent: Agent, *, name: str, cwd: str, sink: EventSink, parent_model: Any
    ) -> Session:
        await self.prepare(agent, cwd)
        return Session(self, name, SessionData(), agent=agent, cwd=cwd, persist=False, sink=sink, parent_model=parent_model)

    async def prepare(self, agent: Agent, cwd: str) -> None:
        """Resolve an agent's tools and compose its context at ``cwd`` (once)."""
        key = (agent.name, cwd)
        if key in self._setups:
            return
        builtins, defaults = builtin_tools(self.registries.tools, self._subagent_descriptions(agent))
        tools = agent_tools(agent.name, agent.tools, builtins=builtins, defaults=defaults, plugins=self._plugin_tools)
        add_tools(tools, self._extra_tools, "init(tools=...)")
        if agent.mcp:
            add_tools(tools, await self._mcp_tools(agent), f"agent '{agent.name}' mcp:")
        definitions = self._skill_definitions(agent)
        host_dir = await self._host_skill_dir(agent) if definitions and _on_host(self.env) else None
        packaged = await install_packaged_skills(self.env, cwd, definitions, host_dir=host_dir)
        ctx: WorkspaceContext = await discover_workspace(self.env, cwd)
        ctx.skills = {**ctx.skills, **packaged}
        for warning in ctx.warnings:
            await self.sink.emit(Log(level="warn", message=warning))
        system = compose_system_prompt(
            render_instructions(agent, cwd, instance=self.instance), ctx, has_sandbox=self.env is not None
        )
        self._setups[key] = AgentSetup(system, ctx.skills, tools)

    async def close(self) -> None:
        """Release what the harness holds: the packaged-skill folder of a host
        sandbox, and the sandbox env if it has ``close()``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        # what points back at the harness, dropped: a closed harness is freed by reference counting
        # at once instead of waiting, with its sessions and sandbox, for the cycle collector
        self.sessions.close()
        self.fs = FlueFs(_closed_env, self.cwd)
        self._setups.clear()
        self._roles.clear()
        if self._skills_tmp is not None:
            await asyncio.to_thread(shutil.rmtree, self._skills_tmp, True)
            self._skills_tmp = None
        for conn, _tools in self._mcp.values():
            await conn.close()
        self._mcp.clear()
        close = getattr(self.env, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result

    # -- internals ----------------------------------------------------------------------------

    async def _mcp_tools(self, agent: Agent) -> list[Tool]:
        """The tools of the agent's MCP servers (connected once per harness; see flue.harness.mcp)."""
        from flue.harness.mcp import connect_servers

        out: list[Tool] = []
        for name, spec in agent.mcp.items():
            url = spec.url if hasattr(spec, "url") else spec["url"]
            key = f"{name} {url}"
            if key not in self._mcp:
                (conn,), tools = await connect_servers({name: spec})
                self._mcp[key] = (conn, tools)
            out += self._mcp[key][1]
        return out

    async def _host_skill_dir(self, agent: Agent) -> str:
        if self._skills_tmp is None:
            self._skills_tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="flue-skills-")
        return os.path.join(self._skills_tmp, agent.name)

    def _setups_by_agent(self, agent: Agent) -> AgentSetup:
        setup = self._setups.get((agent.name, self.cwd))
        if setup is None:
            setup = next(s for (name, _), s in self._setups.items() if name == agent.name)
        return setup

    def _subagent_descriptions(self, agent: Agent) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for sub in agent.subagents:
            if isinstance(sub, str):
                known = self.project.agents.get(sub) if self.project is not None else None
                out[sub] = known.description if known is not None else None
            else:
                out[sub.name] = getattr(sub, "description", None)
        return out

    def _skill_definitions(self, agent: Agent) -> list[SkillDefinition]:
        out = []
        for skill in agent.skills:
            if isinstance(skill, SkillDefinition):
                out.append(skill)
                continue
            known = self.project.skills if self.project is not None else {}
            if skill not in known:
                raise UnknownSkillError(skill, list(known))
            out.append(known[skill])
        return out


async def init(
    agent: Any,
    *,
    name: str = "default",
    id: str | None = None,
    payload: Any = None,
    project: Project | None = None,
    sink: EventSink | None = None,
    session_store: SessionStore | None = None,
    scope: str | None = None,
    model: Any = None,
    tools: list[Tool] | None = None,
    providers: dict[str, Registration] | None = None,
    sandbox: Any = None,
    snapshot: bytes | None = None,
    observe: bool | None = None,
) -> Harness:
    """Initialize an agent as a harness.

    ``model`` overrides the agent's default model; ``tools`` adds tools to every
    session; ``providers`` registers model providers in code (over ``flue.yaml``);
    ``sandbox`` overrides the agent's sandbox (a kind, a factory or an env);
    ``snapshot`` is sandbox state to restore (for factories that support it);
    ``scope`` prefixes session storage keys and the sandbox id (default
    ``agents/<agent>/local``). ``observe`` forwards events to the project's
    ``flue_observe`` plugins; by default only when no ``sink`` is given, since a
    caller passing its sink (the runtime) forwards its whole event tree itself.
    ``id`` is the agent instance the harness works for (the run id in a workflow): what
    initializers see as ``ctx.id``, and with its parsed conversation key ``harness.instance``
    (default: from ``scope``, see the module docstring); ``payload`` is what initializers see
    as ``ctx.payload``.
    """
    if isinstance(agent, str) and project is None:
        from flue.project import load_project

        project = await asyncio.to_thread(load_project, Path.cwd())
    if id is None:
        id = scope.rstrip("/").rsplit("/", 1)[-1] if scope else "local"
    agent_name = agent if isinstance(agent, str) else getattr(agent, "name", "agent")
    agent = await initialize_agent(agent, project, AgentContext(id=id, payload=payload, name=agent_name, harness=name))
    resolved = resolve_agent(agent, project)
    if model is not None or sandbox is not None:
        updates = {k: v for k, v in {"model": model, "sandbox": sandbox}.items() if v is not None}
        resolved = resolved.model_copy(update=updates)
    if project is not None and project.pm is not None:
        pm, registries = project.pm, project.registries
    else:  # no project (or one whose root was missing): the framework's own plugins
        pm, registries = _builtin_plugins()
    scope = scope or instance_path(resolved.name, id)
    hsink = (sink or EventSink()).child(harness=name, agent_name=resolved.name)
    if observe is None:
        observe = sink is None
    if project is not None and project.pm is not None and observe:
        hsink.subscribe(observer_subscriber(project, scope=scope))
    env, missing = await create_env(
        resolved, registries.sandboxes, request_id=f"{scope}/{name}", snapshot=snapshot,
        source_root=project.source_root if project is not None else None,
    )
    harness = Harness(
        name=name,
        agent=resolved,
        project=project,
        pm=pm,
        env=env,
        env_missing=missing,
        sink=hsink,
        store=session_store if session_store is not None else MemorySessionStore(),
        scope=scope,
        registry=ModelRegistry.for_project(project, providers),
        extra_tools=list(tools or []),
        registries=registries,
        instance=instance_info(resolved.name, id, project),
        id=id,
    )
    try:
        await harness.prepare(resolved, harness.cwd)
    except BaseException:
        await harness.close()
        raise
    return harness


def _closed_env() -> SandboxEnv:
    raise RuntimeError("the harness is closed")


def _on_host(env: SandboxEnv | None) -> bool:
    """Whether the env is the host filesystem itself (the local sandbox)."""
    from flue.sandbox.local import LocalSandboxEnv

    return isinstance(env, LocalSandboxEnv)


@functools.cache
def _builtin_plugins() -> tuple[pluggy.PluginManager, Registries]:
    """Without a project, the framework's own plugins (tools, sandboxes, ...) still apply:
    loaded, and their hooks collected, once per process."""
    from flue.plugins import load_plugins
    from flue.registries import Registries

    pm, _infos, _diags = load_plugins(None)
    return pm, Registries(pm)
