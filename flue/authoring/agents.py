"""Agent definitions: ``agents/<name>.md`` (frontmatter + instructions body) or
``agents/<name>.yaml`` (the same keys plus ``instructions``).

Frontmatter keys (all optional)::

    description: one line shown in listings
    model: provider/model          # or false: every call must pass a model
    profile: other-agent           # extend another agent file (its values are the base)
    tools: [bash, read, search_kb] # built-in and plugin tools by name; omit for the defaults
    skills: [review]               # packaged skills from skills/<name>/
    subagents: [researcher]        # agents usable by session.task(agent=...) and the task tool
    sandbox: virtual               # or local, or {kind: <plugin kind>, <options>...}
    cwd: /workspace                # working directory inside the sandbox
    files: {notes.md: "..."}       # seed files written under the cwd at init()
    mcp: {github: {url: ..., headers: {...}, transport: http}}
    thinking: off|minimal|low|medium|high|xhigh
    compaction: false | {threshold: 0.8, keep_recent_tokens: 20000}
    durability: {max_attempts: 10, timeout: 3600}
    max_turns: 50
    http: true | {auth: {bearer_env: MY_TOKEN}}
    roles:                         # named instruction preambles for calls (see flue.agent)
      reviewer: You review strictly and briefly.
      planner: {instructions: Plan before acting., model: provider/model, thinking: high}
      researcher: {profile: researcher}   # another agent file's instructions, model, thinking
    role: reviewer                 # the default role of every session

Every agent file can be used as a profile or a subagent by its name.

``agents/<name>.py`` is an agent built in Python by an initializer
(``def init_agent(ctx)`` or ``agent = flue.create_agent(fn)``, see
``flue.agent``). It is read without being imported: its docstring or
``description = "..."``, ``http = ...`` and ``durability = {...}`` must be
literals at module level.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flue.authoring.source import load_markdown, load_yaml_mapping
from flue.authoring.templates import INSTRUCTION_VARIABLES, check_template, check_variables
from flue.diagnostics import Diagnostic, pydantic_diagnostics

ThinkingLevel = Literal["off", "minimal", "low", "medium", "high", "xhigh"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SandboxSpec(BaseModel):
    """``kind`` names a sandbox registered by a plugin; other keys are its options."""

    model_config = ConfigDict(extra="allow")
    kind: str = "virtual"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AuthSpec(Strict):
    """Declarative HTTP auth. ``bearer_env`` names an env var holding the token."""

    bearer_env: str | None = None
    header: str = "authorization"


class HttpSpec(Strict):
    enabled: bool = True
    auth: AuthSpec | None = None


class McpServerSpec(Strict):
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    transport: Literal["http", "sse"] = "http"


class RoleSpec(Strict):
    """A role: ``instructions`` (a Jinja2 template like an agent's), or ``profile`` (an agent
    file whose instructions, model and thinking it takes; ``instructions`` then follow the
    profile's), with optional ``model`` and ``thinking`` of its own."""

    description: str | None = None
    instructions: str = ""
    profile: str | None = None
    model: str | None = None
    thinking: ThinkingLevel | None = None

    @model_validator(mode="after")
    def _something(self) -> RoleSpec:
        if not self.instructions.strip() and self.profile is None:
            raise ValueError("a role needs 'instructions' or a 'profile'")
        if self.model is not None and "/" not in self.model:
            raise ValueError(f"model '{self.model}' must look like 'provider/model'")
        return self


class CompactionSpec(Strict):
    threshold: float = Field(0.8, gt=0, le=1)
    keep_recent_tokens: int = Field(20_000, ge=0)
    context_window: int | None = Field(None, gt=0)


class DurabilitySpec(Strict):
    max_attempts: int = Field(10, ge=1)
    timeout: float = Field(3600, gt=0, description="seconds before a submission settles as failed")


class AgentDefinition(Strict):
    name: str
    file: str | None = None
    description: str | None = None
    model: str | Literal[False] | None = None
    profile: str | None = None
    instructions: str = ""
    tools: list[str] | None = None
    skills: list[str] = Field(default_factory=list)
    subagents: list[str] = Field(default_factory=list)
    sandbox: SandboxSpec | None = None
    cwd: str | None = None
    files: dict[str, str] = Field(default_factory=dict)
    mcp: dict[str, McpServerSpec] = Field(default_factory=dict)
    thinking: ThinkingLevel | None = None
    compaction: CompactionSpec | Literal[False] | None = None
    durability: DurabilitySpec | None = None
    max_turns: int | None = Field(None, ge=1)
    http: HttpSpec | None = None
    roles: dict[str, RoleSpec] = Field(default_factory=dict)
    role: str | None = None
    module: str | None = None  # agents/<name>.py: the module that builds it (not a frontmatter key)

    @field_validator("roles", mode="before")
    @classmethod
    def _role_shorthand(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {k: {"instructions": r} if isinstance(r, str) else r for k, r in v.items()}
        return v

    @field_validator("sandbox", mode="before")
    @classmethod
    def _sandbox_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    @field_validator("http", mode="before")
    @classmethod
    def _http_shorthand(cls, v: Any) -> Any:
        if v is True:
            return {}
        if v is False:
            return None
        return v

    @field_validator("model", mode="before")
    @classmethod
    def _model_value(cls, v: Any) -> Any:
        if v is True:
            raise ValueError("model must be 'provider/model' or false")
        return v

    @field_validator("model")
    @classmethod
    def _model_shape(cls, v: Any) -> Any:
        if isinstance(v, str) and "/" not in v:
            raise ValueError(f"model '{v}' must look like 'provider/model' (for example 'anthropic/claude-sonnet-4-6')")
        return v

    @model_validator(mode="after")
    def _name_rules(self) -> AgentDefinition:
        if not self.name or ":" in self.name:
            raise ValueError(f"agent name '{self.name}' must be non-empty and contain no ':'")
        return self

    @property
    def exposed(self) -> bool:
        return self.http is not None and self.http.enabled


AGENT_KEYS = set(AgentDefinition.model_fields) - {"name", "file", "module"}


def parse_agent_file(path: Path, *, rel: str) -> tuple[AgentDefinition | None, list[Diagnostic]]:
    """Parse one agent file (``.md`` or ``.yaml``/``.yml``)."""
    name = path.stem
    if path.suffix == ".md":
        meta, body, key_lines, body_line, diags = load_markdown(path, rel)
        if meta is None:
            return None, diags
        if not meta and body_line == 1:  # no frontmatter at all: notes, a README...
            return None, [
                Diagnostic(
                    severity="warning", code="agent.no-frontmatter", file=rel, line=1,
                    message="this Markdown file has no frontmatter, so it is not read as an agent",
                    hint="to make it an agent, start it with '---', a key such as 'description: ...', and '---'; "
                    "otherwise move it out of agents/ (`flue docs read agents`)",
                )
            ]
        if "instructions" in meta:
            return None, [
                Diagnostic(
                    code="agent.unknown-key",
                    file=rel,
                    line=key_lines.get("instructions"),
                    message="'instructions' belongs in the Markdown body of a .md agent, not its frontmatter",
                    hint="move the text below the closing '---'",
                )
            ]
        data = {**meta, "instructions": body.strip()}
    else:
        loaded, key_lines, diags = load_yaml_mapping(path, rel, code="agent", what="an agent YAML file")
        if loaded is None:
            return None, diags
        data = loaded
        body_line = key_lines.get("instructions", 1)
    reserved = [k for k in ("name", "file", "module") if k in data]
    if reserved:
        key = reserved[0]
        return None, [
            Diagnostic(
                code="agent.unknown-key",
                file=rel,
                line=key_lines.get(key),
                message=f"unknown key '{key}'",
                hint="an agent's name is its file name; rename the file instead",
            )
        ]
    instructions = data.get("instructions")
    tdiags = []
    if isinstance(instructions, str):
        tdiags = check_template(instructions, file=rel, line_offset=body_line, what="instructions")
        tdiags += check_variables(instructions, INSTRUCTION_VARIABLES, file=rel, what="instructions")
    roles = data.get("roles")
    for role_name, role in (roles.items() if isinstance(roles, dict) else []):
        text = role if isinstance(role, str) else role.get("instructions") if isinstance(role, dict) else None
        if isinstance(text, str):
            what = f"role '{role_name}' instructions"
            line = key_lines.get("roles", 1) - 1
            tdiags += check_template(text, file=rel, line_offset=line, what=what)
            tdiags += check_variables(text, INSTRUCTION_VARIABLES, file=rel, what=what)
    try:
        agent = AgentDefinition.model_validate({**data, "name": name, "file": rel})
    except Exception as exc:  # pydantic.ValidationError
        return None, pydantic_diagnostics(
            exc, file=rel, code_prefix="agent", line_of=key_lines, schema=AgentDefinition, docs="agents") + tdiags
    return agent, tdiags


# -- agents/<name>.py ------------------------------------------------------------------------

_MODULE_LITERALS = ("description", "http", "durability")


def parse_python_agent(path: Path, *, rel: str) -> tuple[AgentDefinition | None, list[Diagnostic]]:
    """Read an agent module's syntax tree (never import it): it must define ``init_agent``
    or assign ``agent``; ``description``/``http``/``durability`` are read as literals."""
    import ast

    from flue.authoring.source import parse_python

    tree, diags = parse_python(path, rel, code="agent")
    if tree is None:
        return None, diags
    found = False
    literals: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "init_agent":
            found = True
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if not isinstance(target, ast.Name):
                    continue
                if target.id == "agent":
                    found = True
                elif target.id in _MODULE_LITERALS:
                    try:
                        literals[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        return None, [Diagnostic(
                            code="agent.not-literal", file=rel, line=node.lineno,
                            message=f"'{target.id}' must be a literal (it is read without importing the module)",
                            hint="write it as a string, True/False or a dict of literals",
                        )]
    if not found:
        return None, [Diagnostic(
            code="agent.missing-initializer", file=rel,
            message="agent module defines neither 'def init_agent(ctx)' nor 'agent = flue.create_agent(...)'",
            hint="add: def init_agent(ctx):\n      return {\"instructions\": \"...\"}",
        )]
    data: dict[str, Any] = {"name": path.stem, "file": rel, "module": str(path), **literals}
    data.setdefault("description", ast.get_docstring(tree))
    try:
        return AgentDefinition.model_validate(data), []
    except Exception as exc:
        return None, pydantic_diagnostics(exc, file=rel, code_prefix="agent")
