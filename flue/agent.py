"""Agents as Python objects, and resolving agent files into them.

:func:`create_agent` is the ``createAgent`` of Flue for programmers::

    import flue

    support = flue.create_agent(
        name="support",
        model="anthropic/claude-sonnet-4-6",
        instructions="You answer customer questions.",
        tools=["bash", "read", search_kb],   # names and Tool objects; omit for the defaults
    )
    harness = await flue.init(support)

With an initializer, ``create_agent`` is Flue's ``createAgent(({ id }) => ...)``:
the function runs at every harness initialization (every ``init()``, every
durable submission of an agent instance) with an :class:`AgentContext`
(``ctx.id`` is the instance id, or the run id inside a workflow; ``ctx.env``;
``ctx.payload``, the workflow payload under ``ctx.init``), so tools can be
bound to the instance::

    def init_agent(ctx: flue.AgentContext) -> dict:
        @flue.tool
        async def reply_in_thread(text: str) -> str:
            "Reply in this conversation's thread."
            return await post(thread=ctx.id, text=text)
        return {"instructions": "You help in one thread.", "tools": [reply_in_thread]}

    support = flue.create_agent(init_agent, name="support")

It returns the :class:`Agent` fields as a dict (or an :class:`Agent`). In a
project, ``agents/<name>.py`` defining ``init_agent(ctx)`` (sync or async) is
such an agent, addressed by its file name; its module-level literals
``description`` (or the docstring), ``http`` and ``durability`` are read
without importing it (they are needed before any initializer runs), and the
initializer may not return ``name``, ``http`` or ``durability``.

:func:`define_agent_profile` validates a reusable profile: a base for
``profile=`` or a named subagent for ``session.task(agent=...)``. A subagent
profile must not declare ``durability`` (delegated tasks run inside the
calling operation).

**Roles.** A role is a named instruction preamble for a call: its
instructions go first in the system prompt, ahead of the agent's own, and
its ``model``/``thinking`` (when set) apply to the call (the call's own
``model=``/``thinking=`` still win). Tools, skills and history stay the
agent's: a role changes how the agent speaks, a subagent (``task``) changes
who does the work. An agent declares roles by name: ``roles:`` in
frontmatter, each a string (the instructions), a mapping (``instructions``,
``description``, ``model``, ``thinking``) or ``{profile: <agent>}`` (that
agent file's instructions, model and thinking); in Python a string, a
:class:`Role` or a profile :class:`Agent`. Which role a call uses: the call's
``role=``, else the session's (``harness.session(name, role=...)``), else the
agent's ``role:`` default, else none.

Markdown/YAML agents (``agents/<name>.md``) are
:class:`~flue.authoring.agents.AgentDefinition` values; :func:`resolve_agent`
turns either kind into a flat :class:`Agent`, merging its ``profile`` chain:

- a profile's values are the base; every key the agent sets itself overrides
  the profile's (lists such as ``tools``/``skills``/``subagents`` are replaced,
  not concatenated; ``files`` and ``roles`` mappings are merged key by key);
- ``instructions`` are the exception: the profile's instructions come first,
  then the agent's own, separated by a blank line, so a profile can carry a
  house style that every agent built on it keeps.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flue.authoring.agents import AgentDefinition, RoleSpec, ThinkingLevel
from flue.harness.errors import AgentResolutionError

if TYPE_CHECKING:
    from flue.project import Project

DEFAULT_CWD = "/workspace"
DEFAULT_MAX_TURNS = 50
# Keys merged specially or not inherited from a profile.
_NOT_INHERITED = {"name", "file", "description", "profile", "definition", "http", "instructions", "files", "roles"}
PROFILE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# What an initializer may not return: they are read before it runs, or are the file's.
_INITIALIZER_FORBIDDEN = {
    "name": "an agent's name is its file name (or create_agent(init, name=...))",
    "http": "declare 'http = True' at module level: it is read before any initializer runs",
    "durability": "declare 'durability = {...}' at module level: admission reads it before any initializer runs",
    "definition": "it is set by Flue",
}


class Role(BaseModel):
    """A named instruction preamble for a call (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    instructions: str = ""
    description: str | None = None
    model: Any = None
    thinking: ThinkingLevel | None = None


class Agent(BaseModel):
    """A resolved agent: model, instructions, tools, skills, subagents, sandbox.

    ``model`` is ``"provider/model"``, ``False`` (every call must pass a model),
    ``None`` (use ``flue.yaml``'s ``model:``) or a
    :class:`~flue.models.base.ModelProvider` object such as
    :class:`flue.testing.ScriptedModel`. ``tools`` mixes tool names (built-in
    or plugin) and :class:`~flue.tools.Tool` objects; ``None`` means the
    default built-in tools. ``skills`` are skill names (from the project's
    ``skills/``) or :class:`~flue.authoring.skills.SkillDefinition` objects;
    ``subagents`` are agent names or :class:`Agent` objects. ``sandbox`` is a
    kind name, a ``{kind: ..., ...options}`` mapping, a sandbox factory (with
    ``create_session_env``) or a ready sandbox env.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    name: str = "agent"
    description: str | None = None
    model: Any = None
    instructions: str = ""
    tools: list[Any] | None = None
    skills: list[Any] = Field(default_factory=list)
    subagents: list[Any] = Field(default_factory=list)
    sandbox: Any = None
    cwd: str | None = None
    files: dict[str, str] = Field(default_factory=dict)
    thinking: ThinkingLevel | None = None
    max_turns: int | None = Field(None, ge=1)
    mcp: dict[str, Any] = Field(default_factory=dict)
    compaction: Any = None
    durability: Any = None
    http: Any = None
    roles: dict[str, Any] = Field(default_factory=dict)  # name -> str | Role | RoleSpec | profile Agent
    role: str | None = None  # the default role of every session
    profile: Any = None  # an Agent, an AgentDefinition or an agent name (resolved by resolve_agent)
    definition: AgentDefinition | None = None  # the file this agent came from, if any

    @field_validator("subagents")
    @classmethod
    def _subagents(cls, v: list[Any]) -> list[Any]:
        for sub in v:
            if isinstance(sub, Agent) and sub.durability is not None:
                raise ValueError(
                    f"subagent '{sub.name}' declares durability: delegated tasks run inside the calling "
                    "operation; configure durability on the agent that is prompted instead"
                )
        _no_duplicates("subagent", [s if isinstance(s, str) else getattr(s, "name", None) for s in v])
        return v

    @field_validator("roles")
    @classmethod
    def _roles(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, spec in v.items():
            if not isinstance(spec, str | Role | RoleSpec | Agent):
                raise ValueError(f"role '{name}' must be a string (its instructions), a flue.Role or a profile Agent")
        return v

    @model_validator(mode="after")
    def _unique_skills(self) -> Agent:
        _no_duplicates("skill", [s if isinstance(s, str) else getattr(s, "name", None) for s in self.skills])
        return self

    @field_validator("model")
    @classmethod
    def _model(cls, v: Any) -> Any:
        if v is True:
            raise ValueError("model must be 'provider/model', False, or a model provider object")
        if isinstance(v, str) and "/" not in v:
            raise ValueError(f"model '{v}' must look like 'provider/model' (for example 'anthropic/claude-sonnet-4-6')")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or ":" in v:
            raise ValueError(f"agent name '{v}' must be non-empty and contain no ':'")
        return v

    @property
    def working_dir(self) -> str:
        return self.cwd or DEFAULT_CWD

    @property
    def turn_limit(self) -> int:
        return self.max_turns or DEFAULT_MAX_TURNS


def _no_duplicates(kind: str, names: list[str | None]) -> None:
    seen: set[str] = set()
    for name in names:
        if name is not None and name in seen:
            raise ValueError(f"{kind} '{name}' is listed twice")
        if name is not None:
            seen.add(name)


@dataclass(frozen=True)
class AgentContext:
    """What an agent initializer receives: ``id`` (the instance id, or the run id in a
    workflow), ``env``, ``payload`` (the workflow payload under ``ctx.init``, else None),
    the agent's ``name`` and the ``harness`` name."""

    id: str
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    payload: Any = None
    name: str = "agent"
    harness: str = "default"


@dataclass(frozen=True)
class CreatedAgent:
    """An agent built by an initializer at every harness init (``create_agent(fn)``)."""

    initialize: Callable[[AgentContext], Any]
    name: str = "agent"
    description: str | None = None
    definition: AgentDefinition | None = None  # agents/<name>.py, when it came from a project

    async def build(self, ctx: AgentContext) -> Agent:
        """Run the initializer and validate what it returned."""
        out = self.initialize(ctx)
        if inspect.isawaitable(out):
            out = await out
        where = f"agent '{self.name}'" + (f" ({self.definition.file})" if self.definition and self.definition.file else "")
        if isinstance(out, Agent):
            out = {k: getattr(out, k) for k in out.model_fields_set if k != "name"}
        if not isinstance(out, Mapping):
            raise AgentResolutionError(
                f"{where}: its initializer must return a dict of agent fields (or a flue.Agent), not {type(out).__name__}"
            )
        fields = dict(out)
        for key in fields:
            if key in _INITIALIZER_FORBIDDEN:
                raise AgentResolutionError(f"{where}: its initializer returned '{key}': {_INITIALIZER_FORBIDDEN[key]}")
            if key not in Agent.model_fields:
                raise AgentResolutionError(
                    f"{where}: its initializer returned unknown field '{key}' "
                    f"(allowed: {', '.join(sorted(set(Agent.model_fields) - set(_INITIALIZER_FORBIDDEN)))})"
                )
        fields.setdefault("description", self.description)
        try:
            return Agent(name=self.name, definition=self.definition, **fields)
        except ValueError as exc:
            raise AgentResolutionError(f"{where}: its initializer returned an invalid agent: {exc}") from None


def create_agent(init: Callable[[AgentContext], Any] | None = None, /, **fields: Any) -> Any:
    """Build an :class:`Agent` from keyword arguments (see its fields), or, given an
    initializer function, a :class:`CreatedAgent` (then only ``name`` and ``description``
    may be passed beside it)."""
    if init is None:
        return Agent(**fields)
    if not callable(init):
        raise TypeError(f"create_agent() takes an initializer function or keyword fields, not {type(init).__name__}")
    extra = set(fields) - {"name", "description"}
    if extra:
        raise TypeError(
            f"create_agent(init, ...) takes only name= and description= beside the initializer "
            f"(got {', '.join(sorted(extra))}): return the other fields from the initializer"
        )
    name = fields.get("name", "agent")
    Agent(name=name)  # the same name rules
    return CreatedAgent(init, name=name, description=fields.get("description"))


def define_agent_profile(**fields: Any) -> Agent:
    """A validated reusable profile (Flue's ``defineAgentProfile``): a base for ``profile=``
    or, with a ``name``, a subagent for ``session.task(agent=...)``."""
    if "http" in fields:
        raise TypeError("define_agent_profile(): 'http' belongs to an addressable agent, not a profile")
    name = fields.get("name")
    if name is not None and not PROFILE_NAME.match(str(name)):
        raise ValueError(f"profile name {name!r} must start with a letter and use letters, digits, '_' or '-'")
    profile = Agent(**fields)
    if profile.tools:
        _no_duplicates("tool", [t if isinstance(t, str) else getattr(t, "name", None) for t in profile.tools])
    return profile


# -- agents/<name>.py ----------------------------------------------------------------------

_MODULES: dict[str, tuple[float, Any]] = {}


def load_python_agent(definition: AgentDefinition) -> CreatedAgent:
    """Import ``agents/<name>.py`` (again when the file changed) and return its initializer:
    ``init_agent`` (a function) or a module-level ``agent`` made by ``create_agent(fn)``."""
    assert definition.module is not None
    path = Path(definition.module)
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise AgentResolutionError(f"agent '{definition.name}': cannot read {definition.file}: {exc}") from None
    cached = _MODULES.get(str(path))
    if cached is not None and cached[0] == mtime:
        module = cached[1]
    else:
        from flue.authoring.source import import_file

        module = import_file(f"flue_agents.{definition.name.replace('-', '_')}", path)
        _MODULES[str(path)] = (mtime, module)
    init = getattr(module, "init_agent", None)
    if callable(init):
        return CreatedAgent(init, name=definition.name, description=definition.description, definition=definition)
    created = getattr(module, "agent", None)
    if isinstance(created, CreatedAgent):
        return CreatedAgent(created.initialize, name=definition.name,
                            description=created.description or definition.description, definition=definition)
    if isinstance(created, Agent):
        fixed = created.model_copy(update={"name": definition.name, "definition": definition})
        return CreatedAgent(lambda _ctx: fixed, name=definition.name, description=definition.description,
                            definition=definition)
    raise AgentResolutionError(
        f"agent '{definition.name}' ({definition.file}) defines neither 'def init_agent(ctx)' nor "
        "'agent = flue.create_agent(...)'"
    )


async def initialize_agent(agent: Any, project: Project | None, ctx: AgentContext) -> Any:
    """An agent name, definition or :class:`CreatedAgent` whose initializer must run, run;
    anything else is returned as it is (for :func:`resolve_agent`)."""
    if isinstance(agent, str) and project is not None and agent in project.agents:
        agent = project.agents[agent]
    if isinstance(agent, AgentDefinition) and agent.module is not None:
        agent = await asyncio.to_thread(load_python_agent, agent)  # importing user code may take a while
    if isinstance(agent, CreatedAgent):
        return await agent.build(ctx)
    return agent


def _from_definition(definition: AgentDefinition) -> Agent:
    data = {k: getattr(definition, k) for k in definition.model_fields_set if k not in {"file", "module"}}
    data["name"] = definition.name
    if "sandbox" in data and data["sandbox"] is not None:
        data["sandbox"] = {"kind": data["sandbox"].kind, **data["sandbox"].options}
    if "mcp" in data:
        data["mcp"] = dict(definition.mcp)
    if "roles" in data:
        data["roles"] = dict(definition.roles)
    agent = Agent(**data, definition=definition)
    return agent


def resolve_agent(
    agent: str | AgentDefinition | Agent, project: Project | None = None, *, _seen: tuple[str, ...] = ()
) -> Agent:
    """Return a flat Agent (profile chain merged). Names are looked up in ``project``."""
    if isinstance(agent, str):
        if project is None:
            raise AgentResolutionError(f"agent '{agent}' is a name, but no project is loaded to look it up in")
        try:
            agent = project.agent(agent)
        except KeyError as exc:
            raise AgentResolutionError(str(exc.args[0])) from None
    if isinstance(agent, AgentDefinition) and agent.module is not None:
        raise AgentResolutionError(
            f"agent '{agent.name}' is a Python agent module ({agent.file}): it is built by its initializer, so it "
            "can be initialized (init, a prompt, dispatch) but not used as a profile, role or subagent; use an "
            "agent file or flue.define_agent_profile(...) for those"
        )
    if isinstance(agent, CreatedAgent):
        raise AgentResolutionError(
            f"agent '{agent.name}' is built by an initializer: pass it to init() (which runs it), not as a "
            "profile, role or subagent"
        )
    if isinstance(agent, AgentDefinition):
        own = _from_definition(agent)
    elif isinstance(agent, Agent):
        own = agent
    else:
        raise AgentResolutionError(f"cannot use {type(agent).__name__} as an agent: pass a name, an AgentDefinition or an Agent")
    if own.profile is None:
        return own
    key = own.name
    if key in _seen:
        raise AgentResolutionError(f"profile chain of '{_seen[0]}' loops back on itself: {' -> '.join((*_seen, key))}")
    base = resolve_agent(own.profile, project, _seen=(*_seen, key))
    return merge_profile(base, own)


def merge_profile(base: Agent, own: Agent) -> Agent:
    """``own`` on top of ``base`` (see the module docstring for the rules)."""
    set_keys = set(own.model_fields_set)
    if own.definition is not None:
        set_keys |= set(own.definition.model_fields_set)
    merged: dict[str, Any] = {}
    for key in Agent.model_fields:
        if key in _NOT_INHERITED:
            continue
        merged[key] = getattr(own, key) if key in set_keys else getattr(base, key)
    merged["instructions"] = "\n\n".join(p for p in (base.instructions.strip(), own.instructions.strip()) if p)
    merged["files"] = {**base.files, **own.files}
    merged["roles"] = {**base.roles, **own.roles}
    merged.update(name=own.name, description=own.description, http=own.http, definition=own.definition, profile=None)
    return Agent(**merged)
