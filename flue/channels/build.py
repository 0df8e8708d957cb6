"""Building a project's channels at load: options, routes and rules, each problem a diagnostic.

``load_project`` calls :func:`build_channel` for every channel file, so a
server only ever serves channels that checked out, and ``flue info`` shows
their routes and rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flue.authoring.channels import Channel, ChannelDefinition, ChannelKind, ChannelRoute, route_problems
from flue.channels.rules import check_bindings
from flue.diagnostics import Diagnostic, pydantic_diagnostics


def build_channel(ch: ChannelDefinition, kinds: Mapping[str, ChannelKind], agents: Mapping[str, Any]) -> list[Diagnostic]:
    """Check ``ch`` against the project's ``agents`` and set ``ch.channel`` to what serves it;
    return the diagnostics."""
    if ch.source == "python":  # imported and its routes checked at discovery
        return check_bindings(ch, ch.channel.rules, agents)
    kind = kinds.get(ch.kind)
    if kind is None:
        return [
            Diagnostic(
                severity="warning",
                code="channel.unknown-kind",
                file=ch.file,
                line=ch.line("kind"),
                message=f"no installed plugin provides channel kind '{ch.kind}'",
                hint=f"known kinds: {', '.join(sorted(kinds)) or 'none'}"
                + ("" if ch.kind not in ("slack", "github", "webhook") else "; pip install flue-channels"),
            )
        ]
    options: Any = ch.options
    if kind.options is not None:
        try:
            options = kind.options.model_validate(ch.options)
        except Exception as exc:
            problems = pydantic_diagnostics(exc, file=ch.file, code_prefix="channel", line_of=ch.lines)
            return [d.model_copy(update={"line": d.line or ch.line("")}) for d in problems]  # file-wide: line 1
    # Secrets (*_env) are not checked here: they often exist only where the server runs
    # (not in CI's `flue info`); an unset one is a logged 500 naming the variable at request time.
    diags: list[Diagnostic] = []
    try:
        channel = _channel_of(ch, kind, options)
    except Exception as exc:
        return diags + [
            Diagnostic(code="channel.invalid", file=ch.file, line=ch.line(""),
                       message=f"the '{ch.kind}' channel could not be built: {type(exc).__name__}: {exc}")
        ]
    if channel is None:
        return diags
    if channel.fallback is None:
        diags += [
            Diagnostic(code="channel.invalid-route", file=ch.file, line=ch.line("path"), message=f"channel '{ch.name}' {p}")
            for p in route_problems(channel.routes)
        ]
    diags += check_bindings(ch, channel.rules, agents)
    ch.channel = channel
    return diags


def _channel_of(ch: ChannelDefinition, kind: ChannelKind, options: Any) -> Channel | None:
    if kind.build is not None:
        channel = kind.build(ch, options)
        if not isinstance(channel, Channel):
            raise TypeError(f"the kind's build() returned {type(channel).__name__}, not a Channel")
        return channel
    handler = kind.handler
    if handler is None:
        return None
    if isinstance(handler, Mapping):  # the static shape: {"POST /events": fn(request, channel, runtime)}
        routes = []
        for key, fn in handler.items():
            method, _, path = str(key).strip().partition(" ")
            routes.append(ChannelRoute(method.upper(), "/" + path.strip().strip("/"), _bind(fn, ch)))
        return Channel(routes=routes, kind=ch.kind)
    return Channel(routes=[], kind=ch.kind, fallback=_bind(handler, ch))


def _bind(fn: Any, ch: ChannelDefinition) -> Any:
    async def route(request: Any) -> Any:
        import inspect

        from flue.channels.http import runtime_of

        out = fn(request, ch, runtime_of(request))
        return await out if inspect.isawaitable(out) else out

    return route
