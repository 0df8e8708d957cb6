"""``/channels/<name>/<suffix>``: inbound webhooks, served by the channel's routes.

Every channel was built and checked when the project loaded
(:mod:`flue.channels.build`): a YAML file by its kind's ``build``, a Python
module by its ``channel`` export. Serving is a lookup:

- ``/channels/<name>`` itself, an unknown channel, one that did not build, or
  an unknown suffix -> 404 ``route_not_found``; multi-segment suffixes
  (``/webhooks/retries``) match exactly;
- a known suffix with another method -> 405 with ``Allow`` listing the
  declared methods;
- the handler gets the unconsumed request (so it can verify a signature over
  the exact bytes, with its own body limit) and returns an aiohttp response,
  or ``None`` for an empty ``200``; any other value is a 500
  ``internal_error`` (logged; nothing of it reaches the caller).

Authentication of webhooks is the channel's job (signatures), not ``http: auth``.
"""

from __future__ import annotations

import inspect
import logging

from aiohttp import web

from flue.authoring.channels import Channel
from flue.server.errors import internal_error, method_not_allowed, route_not_found
from flue.server.state import state_of

log = logging.getLogger("flue.server")


async def channel_root(request: web.Request) -> web.StreamResponse:
    raise route_not_found(request.method, request.path)


async def channel_route(request: web.Request) -> web.StreamResponse:
    state = state_of(request)
    suffix = "/" + request.match_info["suffix"]
    definition = state.project.channels.get(request.match_info["name"])
    channel = definition.channel if definition is not None else None
    if not isinstance(channel, Channel) or suffix == "/":
        raise route_not_found(request.method, request.path)
    handler = channel.fallback
    if handler is None:
        by_method = {r.method: r.handler for r in channel.routes if r.path == suffix}
        if not by_method:
            raise route_not_found(request.method, request.path)
        handler = by_method.get(request.method)
        if handler is None:
            raise method_not_allowed(request.method, by_method)
    out = handler(request)
    if inspect.isawaitable(out):
        out = await out
    if out is None:
        return web.Response(status=200)
    if not isinstance(out, web.StreamResponse):
        log.error("channel %r handler for %s %s returned %s, not an aiohttp response",
                  definition.name, request.method, suffix, type(out).__name__)  # type: ignore[union-attr]
        raise internal_error(dev=f"the '{definition.name}' channel handler returned {type(out).__name__}, not a response")  # type: ignore[union-attr]
    return out
