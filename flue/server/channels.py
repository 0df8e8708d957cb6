"""``/channels/<name>/<suffix>``: inbound webhooks, served by the channel's kind.

``channels/<name>.yaml`` names a ``kind``; a plugin registers the kind through
``flue_channel_kinds`` as a :class:`~flue.authoring.channels.ChannelKind`
whose ``handler`` serves the channel's routes. Two shapes:

- a mapping ``{"POST /events": fn, "GET /webhook": fn, ...}``: the suffix must
  match exactly (multi-segment suffixes such as ``/webhooks/retries`` work);
  unknown suffix -> 404 ``route_not_found``; known suffix with another method
  -> 405 with ``Allow`` listing the declared methods;
- one callable serving every suffix (``request.match_info["suffix"]``); it
  returns ``None`` for a suffix it does not serve (-> 404 ``route_not_found``).

Either way a handler is ``fn(request, channel, runtime)`` (sync or async),
gets the unconsumed request so it can verify signatures over the exact body,
and returns an aiohttp response; any other return value is a 500
``internal_error``. ``/channels/<name>`` itself, unknown channels, and kinds
without a handler are 404 ``route_not_found``. Authentication of webhooks is
the kind's job (signatures), not ``http: auth``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from flue.server.errors import internal_error, method_not_allowed, route_not_found
from flue.server.state import ServerState, state_of

log = logging.getLogger("flue.server")


async def channel_root(request: web.Request) -> web.StreamResponse:
    raise route_not_found(request.method, request.path)


def _kinds(state: ServerState) -> dict[str, Any]:
    """Channel kinds by name, asked once per loaded project (reloads bring a new project)."""
    project = state.project
    cached = state.cache.get("channel_kinds")
    if cached is not None and cached[0] is project:
        return cached[1]
    kinds: dict[str, Any] = {}
    if project.pm is not None:
        from flue.plugins import collect_named

        named, _diags = collect_named(project.pm, "flue_channel_kinds", "channel kind")  # reported by flue info
        kinds = {name: value for name, (_plugin, value) in named.items()}
    state.cache["channel_kinds"] = (project, kinds)
    return kinds


def _parse_routes(handler: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{"POST /events": fn}`` -> ``{"/events": {"POST": fn}}``."""
    routes: dict[str, dict[str, Any]] = {}
    for key, fn in handler.items():
        method, _, path = str(key).strip().partition(" ")
        routes.setdefault("/" + path.strip().strip("/"), {})[method.upper()] = fn
    return routes


async def channel_route(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    suffix = "/" + request.match_info["suffix"].strip("/")
    channel = state.project.channels.get(request.match_info["name"])
    kind = _kinds(state).get(channel.kind) if channel is not None else None
    handler = getattr(kind, "handler", None)
    if channel is None or handler is None or suffix == "/":
        raise route_not_found(request.method, request.path)
    if isinstance(handler, Mapping):
        by_method = _parse_routes(handler).get(suffix)
        if not by_method:
            raise route_not_found(request.method, request.path)
        fn = by_method.get(request.method)
        if fn is None:
            raise method_not_allowed(request.method, by_method)
    else:
        fn = handler
    out = fn(request, channel, state.runtime)
    if inspect.isawaitable(out):
        out = await out
    if out is None and not isinstance(handler, Mapping):
        raise route_not_found(request.method, request.path)
    if not isinstance(out, web.StreamResponse):
        log.error("channel %r handler returned %s, not an aiohttp response", channel.name, type(out).__name__)
        raise internal_error(dev=f"the '{channel.kind}' channel handler returned {type(out).__name__}, not a response")
    return out
