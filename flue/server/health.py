"""``GET /health``: a liveness answer for load balancers and orchestrators.

``200 {"status": "ok", "version": "<flue version>"}`` (HEAD: the headers only),
never behind auth and never touching persistence or a model, so a probe stays
cheap and says only that this process serves requests. Other methods: 405.
"""

from __future__ import annotations

from aiohttp import web

from flue.server.errors import NOSNIFF, method_not_allowed
from flue.version import __version__

METHODS = ("GET", "HEAD")


async def health_route(request: web.Request) -> web.Response:
    if request.method not in METHODS:
        raise method_not_allowed(request.method, METHODS)
    return web.json_response({"status": "ok", "version": __version__},
                             headers={**NOSNIFF, "Cache-Control": "no-store"})
