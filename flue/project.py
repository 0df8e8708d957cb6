"""A Flue project as found on disk: config, source root, definitions, plugins, diagnostics.

``load_project(root)`` never raises on bad project files: every problem is a
:class:`~flue.diagnostics.Diagnostic`. Source root: ``<root>/.flue/`` if it
exists, else ``<root>/src/``, else ``<root>/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from flue.authoring.agents import AgentDefinition, parse_agent_file, parse_python_agent
from flue.authoring.channels import ChannelDefinition, parse_channel_file
from flue.authoring.skills import SkillDefinition, parse_skill_dir
from flue.authoring.source import resolve_source_root
from flue.authoring.templates import check_template, template_strings
from flue.authoring.workflows import WorkflowDefinition, parse_python_workflow, parse_yaml_workflow
from flue.config import FlueConfig, load_config
from flue.diagnostics import Diagnostic, ProjectError, pydantic_diagnostics, suggestion
from flue.plugins import PluginInfo, load_plugins
from flue.registries import Registries

AGENT_SUFFIXES = (".md", ".yaml", ".yml", ".py")
WORKFLOW_SUFFIXES = (".py", ".yaml", ".yml")
CHANNEL_SUFFIXES = (".yaml", ".yml", ".py")


@dataclass
class Project:
    root: Path
    source_root: Path
    config: FlueConfig
    config_file: Path | None = None
    agents: dict[str, AgentDefinition] = field(default_factory=dict)
    workflows: dict[str, WorkflowDefinition] = field(default_factory=dict)
    skills: dict[str, SkillDefinition] = field(default_factory=dict)
    channels: dict[str, ChannelDefinition] = field(default_factory=dict)
    plugins: list[PluginInfo] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    pm: pluggy.PluginManager | None = None
    #: names of agents and skills whose files have errors ("agents", "skills" -> names): they
    #: exist, so a reference to one is not a second error
    broken: dict[str, set[str]] = field(default_factory=lambda: {"agents": set(), "skills": set()})
    #: what the plugins' collecting hooks registered, collected once (see flue.registries)
    registries: Registries = field(default_factory=Registries)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def raise_on_errors(self) -> None:
        if self.errors:
            raise ProjectError(self.errors)

    @property
    def serving_errors(self) -> list[Diagnostic]:
        """What keeps a server (``flue start``, ``flue dev``) from serving the project: its errors,
        and having nothing to serve (no agent or workflow; channels and skills alone do nothing,
        and Flue's build fails the same way)."""
        if self.agents or self.workflows or self.errors:
            return self.errors
        where = self.rel(self.source_root) if self.source_root != self.root else "the project root"
        return [
            Diagnostic(
                code="project.empty",
                message="no agent or workflow files found",
                hint=f"add agents/<name>.md or workflows/<name>.py (or .yaml) under {where}; "
                "`flue init` writes a working example",
            )
        ]

    def rel(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def agent(self, name: str) -> AgentDefinition:
        try:
            return self.agents[name]
        except KeyError:
            raise KeyError(f"unknown agent '{name}' (available: {', '.join(sorted(self.agents)) or 'none'})") from None

    def workflow(self, name: str) -> WorkflowDefinition:
        try:
            return self.workflows[name]
        except KeyError:
            raise KeyError(
                f"unknown workflow '{name}' (available: {', '.join(sorted(self.workflows)) or 'none'})"
            ) from None

    def info(self) -> dict[str, Any]:
        """The ``flue info --json`` document."""
        return {
            "root": str(self.root),
            "sourceRoot": str(self.source_root),
            "config": self.rel(self.config_file) if self.config_file else None,
            "agents": [
                {
                    "name": a.name,
                    "file": a.file,
                    "description": a.description,
                    "model": a.model if a.model is not None else self.config.default_model(),
                    "profile": a.profile,
                    "http": a.exposed,
                }
                for a in self.agents.values()
            ],
            "workflows": [
                {"name": w.name, "file": w.file, "kind": w.kind, "description": w.description, "http": w.exposed}
                for w in self.workflows.values()
            ],
            "skills": [
                {"name": s.name, "file": s.file, "description": s.description, "files": s.files}
                for s in self.skills.values()
            ],
            "channels": [_channel_info(c) for c in self.channels.values()],
            "plugins": [p.model_dump() for p in self.plugins],
            "diagnostics": [d.model_dump() for d in self.diagnostics],
        }


def load_project(root: str | Path = ".", *, extra_plugins: list[tuple[str, Any]] | None = None) -> Project:
    root = Path(root).resolve()
    source_root = resolve_source_root(root)
    config, config_file, diags = load_config(root)
    project = Project(root=root, source_root=source_root, config=config, config_file=config_file, diagnostics=diags)
    if not root.is_dir():
        project.diagnostics.append(Diagnostic(code="project.missing-root", message=f"project root {root} is not a directory"))
        return project

    _discover(project, "agents", AGENT_SUFFIXES, _parse_agent, project.agents)
    _discover(project, "workflows", WORKFLOW_SUFFIXES, _parse_workflow, project.workflows)
    _discover(project, "channels", CHANNEL_SUFFIXES, lambda p, rel: parse_channel_file(p, rel=rel), project.channels)
    _discover_skills(project)

    disabled = {name for name, v in config.plugins.items() if v is False}
    pm, infos, pdiags = load_plugins(source_root, disabled=disabled, extra=extra_plugins)
    project.pm, project.plugins = pm, infos
    project.diagnostics += pdiags
    _configure_plugins(project)
    project.registries = registries = Registries(pm)
    for registry in (registries.tools, registries.sandboxes, registries.model_providers):
        project.diagnostics += registry.diagnostics
    _check_persistence_kind(project)
    _check_source_root(project)
    _check_references(project)
    _check_channels(project)
    from flue.preflight import run_checks

    run_checks(project)
    return project


#: Where ``flue init`` keeps a project's database: never a folder that could become the source root.
STATE_DIR = ".flue-state"


def _check_source_root(project: Project) -> None:
    """Catch the two ways a project loses its files to the source-root rule (.flue/, then src/)."""
    path = project.config.persistence.options.get("path")
    if project.config.persistence.kind == "sqlite" and isinstance(path, str):
        first = Path(path).parts[0] if Path(path).parts else ""
        if first in (".flue", "src") and not (project.root / first / "agents").is_dir() \
                and not (project.root / first / "workflows").is_dir():
            project.diagnostics.append(Diagnostic(
                severity="error", code="config.state-in-source-root", file=project.rel(project.config_file) if project.config_file else None,
                message=f"persistence path '{path}' creates {first}/, which Flue then takes as the source root "
                        "(and finds none of your agents or workflows there)",
                hint=f"keep the database elsewhere, e.g. 'path: {STATE_DIR}/state.db' (and ignore {STATE_DIR}/ in git)",
            ))
    if project.source_root == project.root or project.agents or project.workflows:
        return
    siblings = [f for f in ("agents", "workflows") if (project.root / f).is_dir()]
    if siblings:
        chosen = project.rel(project.source_root)
        project.diagnostics.append(Diagnostic(
            severity="warning", code="project.empty-source-root", file=chosen,
            message=f"the source root {chosen}/ holds no agents or workflows, but {', '.join(f + '/' for f in siblings)} "
                    "next to it does",
            hint=f"Flue reads {chosen}/ when it exists: move your files into it, or remove {chosen}/ "
                 "(a database or other state kept there creates it)",
        ))


def _parse_agent(path: Path, rel: str):
    return parse_python_agent(path, rel=rel) if path.suffix == ".py" else parse_agent_file(path, rel=rel)


def _parse_workflow(path: Path, rel: str):
    return parse_python_workflow(path, rel=rel) if path.suffix == ".py" else parse_yaml_workflow(path, rel=rel)


def _discover(project: Project, folder: str, suffixes: tuple[str, ...], parse, into: dict[str, Any]) -> None:
    base = project.source_root / folder
    if not base.is_dir():
        return
    seen: dict[str, str] = {}
    for path in sorted(base.iterdir()):
        if not path.is_file() or path.suffix not in suffixes or path.name.startswith((".", "_")):
            continue
        rel = project.rel(path)
        name = path.stem
        if name in seen:
            project.diagnostics.append(
                Diagnostic(
                    code=f"{folder[:-1]}.duplicate-name",
                    file=rel,
                    message=f"{folder[:-1]} '{name}' is defined twice: {seen[name]} and {rel}",
                    hint="keep one file per name; delete or rename the other",
                )
            )
            into.pop(name, None)
            continue
        seen[name] = rel
        definition, diags = parse(path, rel)
        project.diagnostics += diags
        if definition is not None:
            into[name] = definition
        elif folder in project.broken:
            project.broken[folder].add(name)


def _discover_skills(project: Project) -> None:
    base = project.source_root / "skills"
    if not base.is_dir():
        return
    for folder in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        rel = project.rel(folder / "SKILL.md")
        if not (folder / "SKILL.md").is_file():
            project.diagnostics.append(
                Diagnostic(
                    severity="warning",
                    code="skill.missing-file",
                    file=project.rel(folder),
                    message="skill folder has no SKILL.md",
                    hint="add SKILL.md with 'name' and 'description' frontmatter",
                )
            )
            continue
        skill, diags = parse_skill_dir(folder, rel=rel)
        project.diagnostics += diags
        if skill is not None:
            project.skills[skill.name] = skill
        else:
            project.broken["skills"].add(folder.name)


def _configure_plugins(project: Project) -> None:
    assert project.pm is not None
    for impl in project.pm.hook.flue_configure.get_hookimpls():
        name = project.pm.get_name(impl.plugin)
        try:
            kwargs = {"config": project.config, "root": project.root}
            impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except Exception as exc:
            project.diagnostics.append(
                Diagnostic(code="plugin.configure-failed", message=f"plugin '{name}' rejected its configuration: {exc}")
            )


def _check_persistence_kind(project: Project) -> None:
    """``persistence:`` against the kinds the plugins declare (``flue_persistence_kinds``): an
    unknown kind (with a suggestion), or options its model rejects. A persistence plugin that
    declares no kinds may provide any kind, so then an unknown kind is not reported here."""
    if project.pm is None:
        return
    config = project.config.persistence
    file = project.rel(project.config_file) if project.config_file else None
    kinds = project.registries.persistence_kinds
    project.diagnostics.extend(kinds.diagnostics)
    model = kinds.values().get(config.kind)
    if model is None:
        declaring = {project.pm.get_name(impl.plugin) for impl in project.pm.hook.flue_persistence_kinds.get_hookimpls()}
        undeclared = [impl for impl in project.pm.hook.flue_persistence.get_hookimpls()
                      if project.pm.get_name(impl.plugin) not in declaring]
        if not undeclared:
            known = sorted(kinds.values())
            project.diagnostics.append(Diagnostic(
                code="config.unknown-persistence", file=file, line=project.config.line_of("persistence"),
                message=f"persistence kind '{config.kind}' is not provided by any installed plugin "
                        f"(installed: {', '.join(known)})",
                hint=f"{suggestion(config.kind, known)}install the plugin for '{config.kind}' "
                     f"(e.g. pip install flue-{config.kind}) or set persistence.kind to one of those",
            ))
        return
    from pydantic import ValidationError

    try:
        model.model_validate(config.options)
    except ValidationError as exc:
        for d in pydantic_diagnostics(exc, file=file, code_prefix="config", schema=model, docs="persistence"):
            d.message = d.message.replace("'", "'persistence.", 1)
            d.line = project.config.line_of("persistence")
            project.diagnostics.append(d)


def _missing(
    project: Project, kind: str, name: str, file: str | None, field_name: str, available: list[str],
    *, what: str | None = None,
) -> None:
    what = what or kind
    folder = "skills" if kind == "skill" else "agents" if kind in ("agent", "subagent", "profile") else None
    if folder is not None and name in project.broken[folder]:
        return  # its file has errors of its own, reported there
    project.diagnostics.append(
        Diagnostic(
            code=f"reference.missing-{kind}",
            file=file,
            message=f"{field_name} refers to {what} '{name}', which does not exist",
            hint=suggestion(name, [*available, *project.broken.get(folder or "", ())]) + f"available {what}s: {', '.join(sorted(available)) or 'none'}",
        )
    )


def _check_references(project: Project) -> None:
    agents, skills = project.agents, project.skills
    tool_names = _known_tool_names(project)
    sandbox_kinds = _known_sandbox_kinds(project)
    for agent in agents.values():
        _check_roles(project, agent)
        for field_name, ref in [("profile", agent.profile), *(("subagents", sub) for sub in agent.subagents)]:
            if ref in agents and agents[ref].module is not None:
                project.diagnostics.append(Diagnostic(
                    code="agent.module-not-profile", file=agent.file,
                    message=f"{field_name} names '{ref}', a Python agent module ({agents[ref].file}), which is built by "
                            "its initializer and cannot be a profile or subagent",
                    hint="use an agent file (agents/<name>.md) for profiles and subagents",
                ))
        for sub in agent.subagents:
            if sub in agents and agents[sub].durability is not None:
                project.diagnostics.append(Diagnostic(
                    severity="warning", code="agent.subagent-durability", file=agents[sub].file,
                    message=f"'{sub}' declares durability but is a subagent of '{agent.name}': as a subagent it runs "
                            "inside the calling operation, so its durability does not apply there",
                    hint=f"configure durability on '{agent.name}' (the agent that is prompted)",
                ))
        if agent.profile is not None:
            if agent.profile not in agents:
                _missing(project, "profile", agent.profile, agent.file, "profile", list(agents))
            elif _profile_cycle(agents, agent.name):
                project.diagnostics.append(
                    Diagnostic(code="agent.profile-cycle", file=agent.file, message=f"profile chain of '{agent.name}' loops back on itself")
                )
        for s in agent.skills:
            if s not in skills:
                _missing(project, "skill", s, agent.file, "skills", list(skills))
        for sub in agent.subagents:
            if sub not in agents:
                _missing(project, "subagent", sub, agent.file, "subagents", list(agents))
        for t in agent.tools or []:
            if tool_names is not None and t not in tool_names:
                _missing(project, "tool", t, agent.file, "tools", sorted(tool_names))
        if agent.sandbox is not None and sandbox_kinds and agent.sandbox.kind not in sandbox_kinds:
            _missing(
                project, "sandbox", agent.sandbox.kind, agent.file, "sandbox", sorted(sandbox_kinds), what="sandbox kind"
            )
    for wf in project.workflows.values():
        if wf.kind == "yaml":
            _check_yaml_workflow(project, wf)


def _check_roles(project: Project, agent: AgentDefinition) -> None:
    """A role's profile must be an agent file; the default ``role:`` must be declared
    (here or along the profile chain)."""
    agents = project.agents
    for name, role in agent.roles.items():
        if role.profile is not None and role.profile not in agents:
            _missing(project, "profile", role.profile, agent.file, f"role '{name}' profile", list(agents))
        elif role.profile is not None and agents[role.profile].module is not None:
            project.diagnostics.append(Diagnostic(
                code="agent.module-not-profile", file=agent.file,
                message=f"role '{name}' names '{role.profile}', a Python agent module, as its profile",
                hint="use an agent file (agents/<name>.md) as a role's profile",
            ))
    if agent.role is None:
        return
    declared = declared_roles(agents, agent.name)
    if agent.role not in declared:
        project.diagnostics.append(Diagnostic(
            code="agent.unknown-role", file=agent.file,
            message=f"role '{agent.role}' is not declared under 'roles:'",
            hint=suggestion(agent.role, declared) + f"declared roles: {', '.join(sorted(declared)) or 'none'}",
        ))


def declared_roles(agents: dict[str, AgentDefinition], name: str) -> set[str]:
    """The roles an agent file declares, with those of its profile chain."""
    declared: set[str] = set()
    seen: set[str] = set()
    cur: str | None = name
    while cur in agents and cur not in seen:
        seen.add(cur)
        declared |= set(agents[cur].roles)
        cur = agents[cur].profile
    return declared


def _profile_cycle(agents: dict[str, AgentDefinition], start: str) -> bool:
    seen, cur = set(), start
    while cur in agents and agents[cur].profile:
        if cur in seen:
            return True
        seen.add(cur)
        cur = agents[cur].profile  # type: ignore[assignment]
    return cur in seen


def _known_tool_names(project: Project) -> set[str] | None:
    """Built-in tool names plus plugin tools; None if plugins could not be asked."""
    from flue.plugins import BUILTIN_PLUGINS
    from flue.tools import BUILTIN_TOOL_NAMES

    if project.pm is None:
        return None
    named = project.registries.tools.entries
    clash = {name for name, (plugin, _tool) in named.items() if name in BUILTIN_TOOL_NAMES and plugin not in BUILTIN_PLUGINS}
    project_files = {p.name: p.origin for p in project.plugins if p.source == "project"}
    for name in sorted(clash):
        plugin = named[name][0]
        project.diagnostics.append(
            Diagnostic(
                code="tool.builtin-collision",
                file=project_files.get(plugin),
                message=f"plugin '{plugin}' registers tool '{name}', a built-in tool name",
                hint=f"rename the tool; built-in names are {', '.join(BUILTIN_TOOL_NAMES)}",
            )
        )
    return set(BUILTIN_TOOL_NAMES) | set(named)


def _known_sandbox_kinds(project: Project) -> set[str]:
    """Sandbox kinds registered through ``flue_sandboxes`` (empty: no sandbox plugin at all)."""
    return set(project.registries.sandboxes.entries)


def _check_yaml_workflow(project: Project, wf: WorkflowDefinition) -> None:
    seen_ids: list[str] = []
    default_agent = wf.agent
    if default_agent and default_agent not in project.agents:
        _missing(project, "agent", default_agent, wf.file, "agent", list(project.agents))
    for i, step in enumerate(wf.steps, start=1):
        where = f"step {i}" + (f" ('{step.id}')" if step.id else "")
        if step.id is not None:
            if step.id in seen_ids:
                project.diagnostics.append(Diagnostic(code="workflow.duplicate-step", file=wf.file, message=f"{where}: step id '{step.id}' is used twice"))
            seen_ids.append(step.id)
        agent = step.agent or default_agent
        if step.kind != "shell" or agent is not None:
            if agent is None:
                project.diagnostics.append(
                    Diagnostic(
                        code="workflow.missing-agent",
                        file=wf.file,
                        message=f"{where}: no agent to run it",
                        hint="set 'agent:' on the step or at the top of the workflow",
                    )
                )
            elif agent not in project.agents and step.agent is not None:  # the default's is reported once
                _missing(project, "agent", agent, wf.file, f"{where} agent", list(project.agents))
        if step.skill is not None and step.skill not in project.skills:
            _missing(project, "skill", step.skill, wf.file, f"{where} skill", list(project.skills))
        if step.subagent is not None and step.subagent not in project.agents:
            _missing(project, "subagent", step.subagent, wf.file, f"{where} subagent", list(project.agents))
        if agent in project.agents and project.agents[agent].module is None:  # a module's lists are code
            _check_step_lists(project, wf, where, step, agent)
            if step.role is not None and step.role not in declared_roles(project.agents, agent):
                project.diagnostics.append(Diagnostic(
                    code="workflow.unknown-role", file=wf.file,
                    message=f"{where} uses role '{step.role}', which agent '{agent}' does not declare",
                    hint=suggestion(step.role, declared_roles(project.agents, agent))
                    + f"declared roles: {', '.join(sorted(declared_roles(project.agents, agent))) or 'none'}",
                ))
        earlier = set(seen_ids[:-1] if step.id else seen_ids)
        for text in template_strings(step.model_dump(exclude={"id", "result", "agent", "session", "subagent", "skill",
                                                             "role"})):
            _check_step_template(project, wf, where, text, earlier)
    for text in template_strings(wf.return_):
        _check_step_template(project, wf, "return", text, set(seen_ids))


def _inherited(agents: dict[str, AgentDefinition], name: str, key: str) -> list[str]:
    """The value of a list key after the profile chain (an agent's own list replaces its profile's)."""
    seen: set[str] = set()
    cur: str | None = name
    while cur in agents and cur not in seen:
        seen.add(cur)
        definition = agents[cur]
        if key in definition.model_fields_set:
            return list(getattr(definition, key) or [])
        cur = definition.profile
    return []


def _check_step_lists(project: Project, wf: WorkflowDefinition, where: str, step: Any, agent: str) -> None:
    """A skill or task step only works if its agent lists that skill or subagent."""
    agents = project.agents
    checks: list[tuple[str, str | None, Mapping[str, Any], str, str]] = [
        ("skill", step.skill, project.skills, "skills", "uses skill"),
        ("subagent", step.subagent, agents, "subagents", "delegates to"),
    ]
    for kind, name, known, key, verb in checks:
        if name is None or name not in known or name in _inherited(agents, agent, key):
            continue
        project.diagnostics.append(
            Diagnostic(
                code=f"workflow.{kind}-not-listed",
                file=wf.file,
                message=f"{where} {verb} '{name}', but agent '{agent}' does not list it under '{key}:'",
                hint=f"add '{name}' to '{key}:' in {agents[agent].file or 'the agent file'}",
            )
        )


def _check_step_template(project: Project, wf: WorkflowDefinition, where: str, text: str, known: set[str]) -> None:
    diags = check_template(text, file=wf.file or "", what=where)
    if diags:
        project.diagnostics += diags
        return
    from jinja2 import nodes

    tree = project_env().parse(text)
    for node in tree.find_all(nodes.Getattr):
        if isinstance(node.node, nodes.Name) and node.node.name == "steps" and node.attr not in known:
            project.diagnostics.append(
                Diagnostic(
                    code="workflow.unknown-step",
                    file=wf.file,
                    message=f"{where} refers to steps.{node.attr}, which is not an earlier step",
                    hint=suggestion(node.attr, known) + f"earlier step ids: {', '.join(sorted(known)) or 'none'}",
                )
            )
    for node in tree.find_all(nodes.Name):
        if node.ctx == "load" and node.name not in {"payload", "steps", "env", "run_id"} and not _is_local(tree, node.name):
            project.diagnostics.append(
                Diagnostic(
                    code="workflow.unknown-variable",
                    file=wf.file,
                    message=f"{where} uses '{node.name}', which is not defined",
                    hint=suggestion(node.name, ["payload", "steps", "env", "run_id"])
                    + "templates can use payload, steps.<id>, env and run_id",
                )
            )


def _is_local(tree: Any, name: str) -> bool:
    from jinja2 import nodes

    return any(n.name == name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param"))


def project_env():
    from flue.authoring.templates import environment

    return environment()


def _channel_info(c: ChannelDefinition) -> dict[str, Any]:
    from flue.authoring.channels import Channel

    rules = [b.describe() for b in c.channel.rules] if isinstance(c.channel, Channel) else []
    return {"name": c.name, "file": c.file, "kind": c.kind, "source": c.source, "routes": c.routes(), "rules": rules}


def _check_channels(project: Project) -> None:
    """Build each channel now, so a bad option, route or rule is a diagnostic, never a request-time error."""
    if project.pm is None or not project.channels:
        return
    from flue.channels.build import build_channel

    kinds = project.registries.channel_kinds
    project.diagnostics += kinds.diagnostics
    for ch in list(project.channels.values()):
        project.diagnostics += build_channel(ch, kinds.values(), project.agents)
