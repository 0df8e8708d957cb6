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

Markdown/YAML agents (``agents/<name>.md``) are
:class:`~flue.authoring.agents.AgentDefinition` values; :func:`resolve_agent`
turns either kind into a flat :class:`Agent`, merging its ``profile`` chain:

- a profile's values are the base; every key the agent sets itself overrides
  the profile's (lists such as ``tools``/``skills``/``subagents`` are replaced,
  not concatenated; ``files`` mappings are merged key by key);
- ``instructions`` are the exception: the profile's instructions come first,
  then the agent's own, separated by a blank line, so a profile can carry a
  house style that every agent built on it keeps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flue.authoring.agents import AgentDefinition, ThinkingLevel
from flue.harness.errors import AgentResolutionError

if TYPE_CHECKING:
    from flue.project import Project

DEFAULT_CWD = "/workspace"
DEFAULT_MAX_TURNS = 50
# Keys merged specially or not inherited from a profile.
_NOT_INHERITED = {"name", "file", "description", "profile", "definition", "http", "instructions", "files"}


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
    profile: Any = None  # an Agent, an AgentDefinition or an agent name (resolved by resolve_agent)
    definition: AgentDefinition | None = None  # the file this agent came from, if any

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


def create_agent(**fields: Any) -> Agent:
    """Build an :class:`Agent` from keyword arguments (see its fields)."""
    return Agent(**fields)


def _from_definition(definition: AgentDefinition) -> Agent:
    data = {k: getattr(definition, k) for k in definition.model_fields_set if k not in {"file"}}
    data["name"] = definition.name
    if "sandbox" in data and data["sandbox"] is not None:
        data["sandbox"] = {"kind": data["sandbox"].kind, **data["sandbox"].options}
    if "mcp" in data:
        data["mcp"] = dict(definition.mcp)
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
    merged.update(name=own.name, description=own.description, http=own.http, definition=own.definition, profile=None)
    return Agent(**merged)
