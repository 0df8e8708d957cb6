"""What ``flue info`` catches before a run would fail: checks across a loaded project.

Each finding is a :class:`~flue.diagnostics.Diagnostic` naming the file and the fix:

- ``model.unknown-provider`` (error when it looks like a typo of a known provider, else a
  warning: code may still register it): a ``provider/model`` no one provides;
- ``model.missing-api-key`` (warning: a deployment may set the key later): the provider of a
  model the project uses needs an API key whose variable is unset;
- ``auth.missing-token-env`` (warning): ``bearer_env`` names an unset variable, so every
  request would get 401;
- ``workflow.missing-skill-arg`` (error) / ``workflow.unknown-skill-arg`` (warning): a YAML
  skill step's ``args`` against the variables of the skill's body;
- ``workflow.unknown-payload-field`` (warning; error when the schema forbids other fields):
  a template reads ``payload.<field>`` that the workflow's payload schema does not declare;
- ``plugin.unknown-hook`` / ``plugin.hook-not-marked`` (warnings): a ``flue_*`` function of a
  project plugin that is no hook (a misspelt one), or a hook without ``@hookimpl``.

Nothing here imports litellm (its provider list is read from its catalog file).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from flue.diagnostics import Diagnostic, did_you_mean, suggestion

if TYPE_CHECKING:
    from flue.project import Project


#: Findings about the environment a run itself reports when it matters: ``flue run`` does not
#: print them first (a missing key would be said twice); ``flue info``, dev and start do.
RUN_REPORTS = frozenset({"model.missing-api-key", "auth.missing-token-env"})


def run_checks(project: Project) -> None:
    project.diagnostics += [*_models(project), *_bearer_envs(project), *_workflows(project), *_plugin_hooks(project)]


# -- models ---------------------------------------------------------------------------------


def _model_uses(project: Project) -> dict[str, str | None]:
    """Every ``provider/model`` the project names, with the file naming it first."""
    uses: dict[str, str | None] = {}
    for agent in project.agents.values():
        for spec in [agent.model, *(r.model for r in agent.roles.values())]:
            if isinstance(spec, str):
                uses.setdefault(spec, agent.file)
    for wf in project.workflows.values():
        for step in wf.steps:
            if step.model and "{" not in step.model:
                uses.setdefault(step.model, wf.file)
    default = project.config.default_model()
    if default and any(a.model is None for a in project.agents.values()):
        where = project.rel(project.config_file) if project.config.model and project.config_file else None
        uses.setdefault(default, where)
    return uses


def _models(project: Project) -> list[Diagnostic]:
    from flue.config import ProviderConfig
    from flue.models.endpoints import find_api_key
    from flue.models.registry import ModelRegistry, route

    registry = ModelRegistry.for_project(project)
    out: list[Diagnostic] = []
    seen: set[str] = set()
    for spec, file in _model_uses(project).items():
        provider_id, sep, _ = spec.partition("/")
        if not sep or provider_id in seen:
            continue
        seen.add(provider_id)
        registration = registry.registration(provider_id)
        if registration is not None and not isinstance(registration, ProviderConfig):
            continue  # a plugin's provider object: it answers for itself
        endpoint = route(provider_id, registration)
        if endpoint is None and registration is None:
            out += _unknown_provider(provider_id, spec, file, registry.registered)
            continue
        if endpoint is None:  # litellm reads its own variables, except a registration's api_key_env
            assert registration is not None  # an unknown provider was reported above
            missing = registration.api_key_env if registration.api_key_env and not os.environ.get(
                registration.api_key_env) else None
        else:
            _key, missing = find_api_key(endpoint, registration, os.environ)
        if missing:
            out.append(Diagnostic(
                severity="warning", code="model.missing-api-key", file=file,
                message=f"model '{spec}' needs an API key, but {missing} is not set, so every call to it will fail",
                hint=f"add {missing}=... to .env (next to flue.yaml) or export it in the shell; "
                     "a deployment may set it instead",
            ))
    return out


def _unknown_provider(provider_id: str, spec: str, file: str | None, registered: list[str]) -> list[Diagnostic]:
    from flue.models.catalog import _entries

    if not _entries():
        return []  # no catalog to tell (litellm not installed): the first call says
    from flue.models.catalog import known_providers

    known = known_providers(registered)
    if provider_id in known:
        return []
    close = did_you_mean(provider_id, known, cutoff=0.8)  # an error: only a clear typo
    hint = (f"did you mean '{close}/{spec.partition('/')[2]}'? " if close else "") + (
        "register it under 'providers:' in flue.yaml (api:, base_url:) or from a plugin's flue_model_providers "
        "hook; `flue docs read providers` lists the providers")
    return [Diagnostic(
        severity="error" if close else "warning", code="model.unknown-provider", file=file,
        message=f"model '{spec}' names provider '{provider_id}', which is neither registered nor a known provider",
        hint=hint,
    )]


# -- auth -------------------------------------------------------------------------------------


def _bearer_envs(project: Project) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    config_file = project.rel(project.config_file) if project.config_file else None
    places: list[tuple[Any, str | None, str]] = [
        *((a.http.auth, a.file, f"agent '{a.name}'") for a in project.agents.values() if a.http is not None),
        *((w.http.auth, w.file, f"workflow '{w.name}'") for w in project.workflows.values() if w.http is not None),
    ]
    if project.config.admin is not None:
        places.append((project.config.admin.auth, config_file, "the admin routes"))
    for auth, file, what in places:
        env = getattr(auth, "bearer_env", None)
        if env and not os.environ.get(env):
            out.append(Diagnostic(
                severity="warning", code="auth.missing-token-env", file=file,
                message=f"auth.bearer_env of {what} names {env}, which is not set, so every request to it gets 401",
                hint=f"add {env}=<a long random token> to .env or export it in the shell (clients send it as "
                     "'Authorization: Bearer <token>')",
            ))
    return out


# -- YAML workflows: skill args, payload fields -------------------------------------------------


def skill_variables(body: str) -> tuple[set[str], set[str]]:
    """The arguments a skill body uses: ``(all, required)``; a variable only ever used through
    ``| default(...)`` (or tested with ``is defined``) is optional. ``args`` itself is not one."""
    from jinja2 import TemplateSyntaxError, meta, nodes

    from flue.authoring.templates import environment

    try:
        tree = environment().parse(body)
    except TemplateSyntaxError:
        return set(), set()
    used = meta.find_undeclared_variables(tree) - {"args"}
    used |= {n.attr for n in tree.find_all(nodes.Getattr) if isinstance(n.node, nodes.Name) and n.node.name == "args"}
    guarded = {id(f.node) for f in tree.find_all(nodes.Filter) if f.name == "default"}
    guarded |= {id(t.node) for t in tree.find_all(nodes.Test) if t.name in ("defined", "undefined", "none")}
    plain = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load" and id(n) not in guarded}
    return used, (used & plain) - {"args"}


def _workflows(project: Project) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for wf in project.workflows.values():
        if wf.kind != "yaml":
            continue
        for i, step in enumerate(wf.steps, start=1):
            where = f"step {i}" + (f" ('{step.id}')" if step.id else "")
            if step.skill is not None and step.skill in project.skills:
                out += _skill_args(wf.file, where, step.skill, project.skills[step.skill].body, set(step.args))
        out += _payload_fields(wf)
    return out


def _skill_args(file: str | None, where: str, skill: str, body: str, given: set[str]) -> list[Diagnostic]:
    used, required = skill_variables(body)
    unused = set(given - used)
    out = []
    for name in sorted(required - given):
        typo = did_you_mean(name, unused)  # one misspelt key is one finding, not a missing and an unknown one
        unused.discard(typo or "")
        out.append(Diagnostic(
            code="workflow.missing-skill-arg", file=file,
            message=f"{where}: skill '{skill}' uses '{{{{ {name} }}}}', but the step's args give "
                    + (f"'{typo}' instead" if typo else f"no '{name}'"),
            hint=(f"did you mean '{name}'? rename '{typo}' under args:" if typo else
                  f"add '{name}: ...' under args:, or write '{{{{ {name} | default(...) }}}}' in the skill"),
        ))
    for name in sorted(unused):
        out.append(Diagnostic(
            severity="warning", code="workflow.unknown-skill-arg", file=file,
            message=f"{where}: skill '{skill}' does not use argument '{name}'",
            hint=suggestion(name, used) + f"the skill's arguments: {', '.join(sorted(used)) or 'none'}",
        ))
    return out


def _payload_fields(wf: Any) -> list[Diagnostic]:
    from jinja2 import TemplateSyntaxError, nodes

    from flue.authoring.templates import environment, template_strings

    schema = wf.payload if isinstance(wf.payload, dict) else {}
    props = schema.get("properties")
    if not isinstance(props, dict):
        return []
    closed = schema.get("additionalProperties") is False
    texts = [*(s for step in wf.steps for s in template_strings(step.model_dump())), *template_strings(wf.return_)]
    seen: set[str] = set()
    out = []
    for text in texts:
        try:
            tree = environment().parse(text)
        except TemplateSyntaxError:
            continue  # reported elsewhere
        fields = [n.attr for n in tree.find_all(nodes.Getattr) if isinstance(n.node, nodes.Name) and n.node.name == "payload"]
        fields += [n.arg.value for n in tree.find_all(nodes.Getitem) if isinstance(n.node, nodes.Name)
                   and n.node.name == "payload" and isinstance(n.arg, nodes.Const) and isinstance(n.arg.value, str)]
        for name in fields:
            if name in props or name in seen:
                continue
            seen.add(name)
            close = did_you_mean(name, props)
            out.append(Diagnostic(
                severity="error" if closed else "warning", code="workflow.unknown-payload-field", file=wf.file,
                message=f"a template reads payload.{name}, which the payload schema does not declare",
                hint=(f"did you mean payload.{close}? " if close else "")
                + f"declared fields: {', '.join(sorted(props))}; or add '{name}' under payload: properties:",
            ))
    return out


# -- plugins ------------------------------------------------------------------------------------


def _plugin_hooks(project: Project) -> list[Diagnostic]:
    """Project plugins' ``flue_*`` functions that are not hooks, or hooks not marked."""
    import inspect

    from flue.hookspecs import FlueSpec, hookimpl

    if project.pm is None:
        return []
    hooks = {name for name in vars(FlueSpec) if name.startswith("flue_")}
    marker = f"{hookimpl.project_name}_impl"
    out = []
    for info in project.plugins:
        if info.source != "project" or info.origin == "<code>":
            continue
        module = project.pm.get_plugin(info.name)
        file = project.rel(project.source_root / info.origin)
        if module is None:
            continue
        for name, fn in vars(module).items():
            if not name.startswith("flue_") or not inspect.isfunction(fn) or fn.__module__ != module.__name__:
                continue
            line = fn.__code__.co_firstlineno
            if name not in hooks:
                close = did_you_mean(name, hooks)
                out.append(Diagnostic(
                    severity="warning", code="plugin.unknown-hook", file=file, line=line,
                    message=f"'{name}' is not a Flue hook, so Flue never calls it",
                    hint=(f"did you mean '{close}'? " if close else "")
                    + "`flue docs read plugins` lists the hooks (names start with flue_)",
                ))
            elif not hasattr(fn, marker):
                out.append(Diagnostic(
                    severity="warning", code="plugin.hook-not-marked", file=file, line=line,
                    message=f"'{name}' is a hook but is not marked @hookimpl, so Flue never calls it",
                    hint="add 'from flue import hookimpl' and put @hookimpl on the line above it",
                ))
    return out
