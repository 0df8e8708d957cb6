"""Declarative dispatch rules: verified events -> ``dispatch`` to agent instances.

A channel file maps event names to rules (one rule, or a list tried in
order)::

    events:
      app_mention:
        agent: assistant                       # required: an agent of the project
        id: "{{ conversation_key(team=payload.team_id, channel=event.channel, thread=event.thread_ts or event.ts) }}"
        input: {text: "{{ event.text }}"}      # any YAML; strings are Jinja2 templates
        when: "not event.bot_id"               # optional Jinja2 expression; the rule applies when true
        dispatch_id: "{{ payload.event_id }}"  # optional; default: the provider's event/delivery id
        reply: true                            # post the agent's final answer back (kinds that can)
        response: {text: "On it"}              # optional JSON body of the HTTP answer (default: empty 200)

The first rule of the first matching event name whose ``when`` holds is
applied; events no rule matches are acknowledged with an empty ``200``.
Kinds give defaults for ``id``, ``input`` and ``dispatch_id`` where the
provider has natural ones, and list the variables a rule's templates get
(``payload``, ``event``, ``conversation_key(...)``...). Templates are checked
at load (syntax, unknown variables: diagnostics with file and line); at
request time a missing payload field is empty, not an error.

**Deduplication.** The dispatch id is ``<channel>:<dispatch_id>``, so a
provider's retry of one event is admitted once and gets the original
receipt (the store's replay rule); the same id with different input is a
409 ``dispatch_conflict``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from flue.diagnostics import Diagnostic

if TYPE_CHECKING:
    from flue.authoring.channels import ChannelDefinition
    from flue.persistence.submissions import Submission
    from flue.runtime.runtime import Runtime

log = logging.getLogger("flue.channels")

MAX_ID_LENGTH = 512  # as an instance id over HTTP (flue.server.lookup.MAX_INSTANCE_ID)


class DispatchRule(BaseModel):
    """One rule of a channel file (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1)
    id: str | None = None
    input: Any = None
    dispatch_id: str | None = None
    when: str | None = None
    reply: bool = False
    response: Any = None


#: What an event name maps to in a channel file: a rule or a list of rules (tried in order).
#: (Tagged so a bad rule gets one diagnostic, not one per union branch.)
Rules = Annotated[
    Annotated[DispatchRule, Tag("Rule")] | Annotated[list[DispatchRule], Tag("RuleList")],
    Discriminator(lambda v: "RuleList" if isinstance(v, list) else "Rule"),
]


def rules_in(*surfaces: Mapping[str, Any] | None) -> list[DispatchRule]:
    """Every rule of some surfaces (``{event: rule or [rules]}``), for option checks."""
    return [r for s in surfaces if s for v in s.values() for r in (v if isinstance(v, list) else [v])]


@dataclass(frozen=True)
class RuleDefaults:
    """A kind's templates for what a rule leaves out (None: the rule must say it)."""

    id: str | None = None
    input: Any = None
    dispatch_id: str | None = None


@dataclass
class RuleBinding:
    """A rule as declared in a channel: where it is, what it gets."""

    path: tuple[Any, ...]  # key path in the file, e.g. ("events", "app_mention") or (..., 0)
    event: str
    rule: DispatchRule
    variables: tuple[str, ...]
    defaults: RuleDefaults = field(default_factory=RuleDefaults)

    def describe(self) -> dict[str, Any]:
        """The ``flue info`` entry of this rule."""
        out: dict[str, Any] = {"on": ".".join(str(p) for p in self.path), "agent": self.rule.agent}
        if self.rule.when:
            out["when"] = self.rule.when
        out["reply"] = self.rule.reply
        return out


class RuleTable:
    """The rules of one surface of a channel (e.g. Slack's ``events``)."""

    def __init__(
        self, surface: str, rules: Mapping[str, Rules] | None, *, variables: tuple[str, ...],
        defaults: RuleDefaults = RuleDefaults(),
    ):
        self.surface = surface
        self.by_event: dict[str, list[RuleBinding]] = {}
        for event, value in (rules or {}).items():
            items = value if isinstance(value, list) else [value]
            self.by_event[event] = [
                RuleBinding(
                    (surface, event, i) if isinstance(value, list) else (surface, event), event, rule, variables, defaults
                )
                for i, rule in enumerate(items)
            ]

    @property
    def bindings(self) -> list[RuleBinding]:
        return [b for items in self.by_event.values() for b in items]

    def match(self, events: Iterable[str], variables: dict[str, Any]) -> RuleBinding | None:
        """The first rule of the first of ``events`` (most specific first) whose ``when`` holds."""
        for event in events:
            for binding in self.by_event.get(event, []):
                if binding.rule.when is None or _truthy(binding.rule.when, variables):
                    return binding
        return None


@lru_cache(maxsize=1)
def channel_environment() -> Any:
    """Sandboxed Jinja2 where a missing payload field is empty (``event.thread_ts or event.ts`` works)."""
    from jinja2 import ChainableUndefined

    from flue.authoring.templates import make_environment

    return make_environment(ChainableUndefined)


def _truthy(expression: str, variables: dict[str, Any]) -> bool:
    return bool(channel_environment().compile_expression(expression)(**variables))


def _plain(value: Any) -> Any:
    """A rendered value as JSON data: undefined fields become None, other objects strings."""
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def render_tree(value: Any, variables: dict[str, Any]) -> Any:
    from flue.authoring.templates import evaluate_tree

    return _plain(evaluate_tree(value, variables, env=channel_environment()))


class RuleError(Exception):
    """A rule could not be applied to this event (a template failed on its data)."""


@dataclass
class Applied:
    """What a rule did with an event."""

    binding: RuleBinding
    submission: Submission
    created: bool
    response: Any = None


async def apply_rule(
    binding: RuleBinding,
    variables: dict[str, Any],
    *,
    runtime: Runtime,
    channel: str,
) -> Applied:
    """Render the rule over the event and admit the dispatch (idempotent by dispatch id).

    Raises :class:`RuleError` when a template fails on this event's data (an
    empty instance id, a conversation key whose fields are missing).
    """
    rule, defaults = binding.rule, binding.defaults
    where = ".".join(str(p) for p in binding.path)
    try:
        instance_id = render_tree(rule.id if rule.id is not None else defaults.id, variables)
        if "input" in rule.model_fields_set:
            data = render_tree(rule.input, variables)
        else:
            data = render_tree(defaults.input, variables)
        raw_id = rule.dispatch_id if rule.dispatch_id is not None else defaults.dispatch_id
        dispatch_id = render_tree(raw_id, variables) if raw_id is not None else None
        response = render_tree(rule.response, variables) if rule.response is not None else None
    except Exception as exc:  # jinja2 errors, conversation_key() on missing fields
        raise RuleError(f"rule {where}: {type(exc).__name__}: {exc}") from None
    if not isinstance(instance_id, str | int) or not str(instance_id).strip():
        raise RuleError(f"rule {where}: the instance id rendered empty for this event")
    instance_id = str(instance_id).strip()
    if len(instance_id) > MAX_ID_LENGTH or "/" in instance_id:
        raise RuleError(f"rule {where}: an instance id is at most {MAX_ID_LENGTH} characters with no '/'")
    full_id = f"{channel}:{dispatch_id}" if dispatch_id not in (None, "") else None
    sub, created = await runtime.coordinator.admit(rule.agent, instance_id, data, kind="dispatch", dispatch_id=full_id)
    return Applied(binding, sub, created, response)


def check_bindings(
    definition: ChannelDefinition, bindings: list[RuleBinding], agents: Iterable[str]
) -> list[Diagnostic]:
    """Load-time checks of a channel's rules: agents, ids, templates (file and line for each)."""
    from jinja2 import TemplateSyntaxError, meta

    from flue.authoring.templates import template_strings

    known_agents = set(agents)
    env = channel_environment()
    out: list[Diagnostic] = []

    def diag(path: tuple[Any, ...], code: str, message: str, hint: str | None = None) -> None:
        out.append(Diagnostic(code=f"channel.{code}", file=definition.file, line=definition.line(path),
                              message=message, hint=hint))

    for b in bindings:
        where = ".".join(str(p) for p in b.path)
        rule = b.rule
        if rule.agent not in known_agents:
            diag(b.path + ("agent",), "unknown-agent", f"rule {where} dispatches to agent '{rule.agent}', which does not exist",
                 f"available agents: {', '.join(sorted(known_agents)) or 'none'}")
        if rule.id is None and b.defaults.id is None:
            diag(b.path, "missing-id", f"rule {where} needs an 'id' (the agent instance to dispatch to)",
                 "for example id: \"{{ payload.user.id }}\"")
        fields: list[tuple[str, Any]] = [("id", rule.id), ("input", rule.input), ("dispatch_id", rule.dispatch_id),
                                         ("response", rule.response)]
        sources = [(name, text) for name, value in fields for text in template_strings(value)]
        if rule.when is not None:
            sources.append(("when", "{{ (" + rule.when + ") }}"))
        for name, text in sources:
            try:
                unknown = sorted(meta.find_undeclared_variables(env.parse(text)) - set(b.variables))
            except TemplateSyntaxError as exc:
                diag(b.path + (name,), "template-syntax", f"rule {where} {name}: Jinja2 syntax error: {exc.message}",
                     "check the {{ }} and {% %} pairs")
                continue
            if unknown:
                diag(b.path + (name,), "unknown-variable",
                     f"rule {where} {name} uses {', '.join(repr(u) for u in unknown)}, which is not defined",
                     f"this rule's templates can use {', '.join(b.variables)}")
    return out


def scheduled_reply(applied: Applied, schedule: Callable[[Submission], Any] | None) -> None:
    """Start the reply of a rule with ``reply: true`` for a newly admitted dispatch (never for a replay)."""
    if applied.binding.rule.reply and applied.created and schedule is not None:
        schedule(applied.submission)
