"""Channels: ``channels/<name>.yaml`` (declarative) or ``channels/<name>.py`` (code).

A channel is verified HTTP ingress under ``/channels/<name>/<suffix>``: a
provider (Slack, GitHub, any signed webhook) posts events, the channel checks
them and dispatches input to agent instances. The file's basename is the
channel's name (no ``:``).

**YAML** names a ``kind`` that a plugin registered through
``flue_channel_kinds`` (``pip install flue-channels`` brings ``slack``,
``github`` and ``webhook``); the other keys are that kind's options, checked
by its pydantic schema. Its dispatch rules are checked at load: the agent
exists, every template compiles and uses only the variables the rule gets.
Every problem is a diagnostic with file and line (``flue info``), never an
error at request time::

    # channels/slack.yaml
    kind: slack
    signing_secret_env: SLACK_SIGNING_SECRET
    events:
      app_mention:
        agent: assistant
        input: {text: "{{ event.text }}", user: "{{ event.user }}"}
        reply: true

Top-level string options may use ``${NAME}`` / ``${NAME:-default}`` like
``flue.yaml``; secrets are named by env var (``*_env``) and read at request time,
so they never appear in ``flue info`` (which does not require them to be set:
an unset one is a logged 500 naming the variable, at request time).

**Python** modules export a named ``channel``: one built by a kind's
constructor (``flue_channels.slack_channel(...)``...) or any object with
``routes``, a list of :class:`ChannelRoute` (or ``{"method", "path",
"handler"}`` mappings). Modules are imported at load; an import error is a
diagnostic naming the line. Route rules (as Flue's): ``method`` is uppercase
ASCII letters; ``path`` starts with ``/``, has no ``?``, ``#``, empty, ``.`` or
``..`` segments and no trailing ``/``; ``handler`` is callable; no two routes
share method and path. A handler is ``async handler(request)`` (or sync) and
returns an aiohttp response, or ``None`` for an empty ``200``. It gets the
unconsumed request, so it can verify a signature over the exact body
(:func:`flue.channels.http.read_body`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from flue.authoring.source import load_yaml_mapping
from flue.diagnostics import Diagnostic

if TYPE_CHECKING:
    from flue.channels.keys import ConversationFormat
    from flue.channels.rules import RuleBinding

_METHOD = re.compile(r"[A-Z]+")


@dataclass(frozen=True)
class ChannelRoute:
    """One published route of a channel, relative to ``/channels/<name>``."""

    method: str
    path: str
    handler: Callable[..., Any]

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class Channel:
    """What a channel kind builds and a Python channel module exports.

    ``rules`` are its declarative dispatch rules (checked at load, listed by
    ``flue info``); ``conversation`` is the conversation-key format of its
    provider, if it has one (see :mod:`flue.channels.keys`); ``fallback``
    serves every suffix instead of ``routes`` (the older one-callable kind shape).
    """

    routes: list[ChannelRoute]
    kind: str = "custom"
    rules: list[RuleBinding] = field(default_factory=list)
    conversation: ConversationFormat | None = None
    fallback: Callable[..., Any] | None = None


def route_problems(routes: Any) -> list[str]:
    """Why a channel's routes cannot be served (empty when they can)."""
    if not isinstance(routes, list | tuple) or not routes:
        return ["must declare at least one route"]
    problems: list[str] = []
    seen: set[str] = set()
    for i, route in enumerate(routes):
        method, path, handler = (getattr(route, k, None) for k in ("method", "path", "handler"))
        where = f"route {i + 1}" + (f" ({method} {path})" if isinstance(method, str) and isinstance(path, str) else "")
        if not isinstance(method, str) or not _METHOD.fullmatch(method):
            problems.append(f"{where}: method must be uppercase ASCII letters (e.g. POST), got {method!r}")
        if not isinstance(path, str) or len(path) < 2 or not path.startswith("/") or path.startswith("//"):
            problems.append(f"{where}: path must be an absolute suffix such as '/events', got {path!r}")
        elif "?" in path or "#" in path:
            problems.append(f"{where}: path must not contain a query or fragment")
        elif any(seg in ("", ".", "..") for seg in path[1:].split("/")):
            problems.append(f"{where}: path must remain beneath its channel namespace (no empty, '.' or '..' segments)")
        if not callable(handler):
            problems.append(f"{where}: handler must be callable")
        key = f"{method} {path}"
        if key in seen:
            problems.append(f"declares duplicate route '{key}'")
        seen.add(key)
    return problems


def as_channel(value: Any) -> Channel | None:
    """A Python module's ``channel`` export as a :class:`Channel` (None when it is not one)."""
    if isinstance(value, Channel):
        return value
    routes = value.get("routes") if isinstance(value, Mapping) else getattr(value, "routes", None)
    if not isinstance(routes, list | tuple):
        return None
    out = []
    for r in routes:
        if isinstance(r, Mapping):
            r = ChannelRoute(method=r.get("method"), path=r.get("path"), handler=r.get("handler"))  # type: ignore[arg-type]
        out.append(r)
    return Channel(routes=out)


class ChannelDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    name: str
    file: str | None = None
    kind: str
    source: Literal["yaml", "python"] = "yaml"
    options: dict[str, Any] = {}
    lines: dict[str, int] = Field(default_factory=dict, exclude=True)  # "events.app_mention.id" -> line
    channel: Any = Field(default=None, exclude=True)  # the built Channel (set at load when it checks out)

    def line(self, path: str | tuple[Any, ...]) -> int | None:
        """The line of a key path, or of its nearest enclosing key."""
        from flue.diagnostics import line_of_path

        dotted = ".".join(str(p) for p in path) if isinstance(path, tuple) else path
        found = line_of_path(self.lines, dotted)
        return found if found is not None else self.lines.get("", 1 if self.file else None)

    def routes(self) -> list[str]:
        return [r.key for r in self.channel.routes] if isinstance(self.channel, Channel) else []


class ChannelKind(BaseModel):
    """A channel kind registered by a plugin through ``flue_channel_kinds``.

    - ``options``: a pydantic model validating the channel file's keys (other than ``kind``).
    - ``build(definition, options) -> Channel``: the channel's routes (and its
      declarative rules) for a checked file; called at load, so it must not
      need secrets (read them at request time). Raising is a diagnostic.
    - ``handler`` (older, static shape): a mapping ``{"POST /events": fn}`` or
      one callable for every suffix, each ``fn(request, channel, runtime)``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    description: str = ""
    options: type[BaseModel] | None = None
    build: Callable[[ChannelDefinition, Any], Channel] | None = None
    handler: Any = None


def parse_channel_file(path: Path, *, rel: str) -> tuple[ChannelDefinition | None, list[Diagnostic]]:
    name = path.stem
    if not name or ":" in name:
        return None, [Diagnostic(code="channel.invalid-name", file=rel, message=f"channel name '{name}' must contain no ':'")]
    if path.suffix == ".py":
        return _parse_python_channel(path, name, rel)
    data, _, diags = load_yaml_mapping(path, rel, code="channel", what="a channel file")
    if data is None:
        return None, diags
    if not isinstance(data.get("kind"), str):
        return None, [
            Diagnostic(
                code="channel.missing-kind",
                file=rel,
                line=1,
                message="a channel file must be a mapping with a 'kind' (for example 'kind: webhook')",
            )
        ]
    lines = _deep_lines(path)
    options = {k: v for k, v in data.items() if k != "kind"}
    options, diags = _interpolate_top_level(options, rel, lines)
    return ChannelDefinition(name=name, file=rel, kind=data["kind"], options=options, lines=lines), diags


def _interpolate_top_level(
    options: dict[str, Any], rel: str, lines: dict[str, int]
) -> tuple[dict[str, Any], list[Diagnostic]]:
    """``${NAME}`` in top-level string options (not in rules: those are Jinja2 over payloads)."""
    from flue.config import MissingEnvVar, interpolate_env

    out, diags = dict(options), []
    for key, value in options.items():
        if isinstance(value, str):
            try:
                out[key] = interpolate_env(value, path=key)
            except MissingEnvVar as exc:
                diags.append(Diagnostic(code="channel.missing-env", file=rel, line=lines.get(key), message=str(exc),
                                        hint="set it in the shell or in .env, or give a default: ${NAME:-value}"))
    return out, diags


def _deep_lines(path: Path) -> dict[str, int]:
    """Line of every key path (``a.b.0.c``) in a YAML file, for diagnostics inside rules."""
    import yaml

    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return {}
    lines: dict[str, int] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    here = f"{prefix}{key.value}"
                    lines[here] = key.start_mark.line + 1
                    walk(value, here + ".")
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[f"{prefix}{i}"] = item.start_mark.line + 1
                walk(item, f"{prefix}{i}.")

    walk(root, "")
    return lines


def _parse_python_channel(path: Path, name: str, rel: str) -> tuple[ChannelDefinition | None, list[Diagnostic]]:
    from flue.authoring.source import import_file, traceback_line

    line = _assignment_line(path, "channel")
    module_name = f"flue_project_channels.{name}"
    try:
        module = import_file(module_name, path)
    except Exception as exc:
        return None, [
            Diagnostic(
                code="channel.load-failed",
                file=rel,
                line=traceback_line(exc, path),
                message=f"channel module failed to import: {type(exc).__name__}: {exc}",
                hint="fix the error in the module; a missing env var is read by the module itself",
            )
        ]
    if not hasattr(module, "channel"):
        return None, [
            Diagnostic(
                code="channel.missing-export",
                file=rel,
                message="a channel module must export a created channel as the named 'channel' binding",
                hint="channel = slack_channel(signing_secret=..., events=...)  (from flue_channels import slack_channel)",
            )
        ]
    channel = as_channel(module.channel)
    if channel is None:
        return None, [
            Diagnostic(
                code="channel.invalid", file=rel, line=line,
                message=f"'channel' must be a created channel or an object with 'routes', got {type(module.channel).__name__}",
            )
        ]
    problems = route_problems(channel.routes)
    if problems:
        return None, [
            Diagnostic(code="channel.invalid-route", file=rel, line=line, message=f"channel '{name}' {p}")
            for p in problems
        ]
    definition = ChannelDefinition(name=name, file=rel, kind=channel.kind, source="python", channel=channel)
    definition.lines[""] = line or 1
    return definition, []


def _assignment_line(path: Path, target: str) -> int | None:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, OSError, UnicodeDecodeError):
        return None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        if any(isinstance(t, ast.Name) and t.id == target for t in targets):
            return node.lineno
    return None
