"""The playground page at ``/_flue/``: a browser client of the public HTTP API and the admin API.

Static files only (``index.html``, ``app.js``, ``style.css`` next to this
module), no build step, nothing fetched from elsewhere: it works offline. The
page reads the project from ``<admin>/project`` (polled with ``If-None-Match``,
so a ``flue dev`` reload redraws it), lists runs from ``<admin>/runs``, prompts
agents with ``POST /agents/<name>/<id>``, starts workflows with ``POST
/workflows/<name>`` and follows both through their Durable Streams (SSE read
with ``fetch``, so it can carry a bearer token).

Served by ``flue dev`` whenever it serves the admin API (always on a loopback
address), and by ``flue start`` only with ``playground: true`` in flue.yaml,
which needs an ``admin:`` section. The files themselves are the same for every
project and carry no data; everything the page shows comes from the API, which
under ``flue start`` answers only with the admin token (the page asks for it and
keeps it in the tab's ``sessionStorage``).

    GET /_flue/             the page (``/_flue`` redirects here)
    GET /_flue/app.js, api.js, form.js, markdown.js, style.css
    GET /_flue/config.json  {"admin": "<admin path>", "auth": bool, "dev": bool}
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from flue.server.errors import NOSNIFF
from flue.server.state import state_of

BASE = "/_flue"
FILES = {"index.html": "text/html", "app.js": "text/javascript", "api.js": "text/javascript",
         "form.js": "text/javascript", "markdown.js": "text/javascript", "style.css": "text/css"}
HEADERS = {
    **NOSNIFF,
    "Cache-Control": "no-cache",
    "Referrer-Policy": "no-referrer",
    # everything is same-origin: no inline script, no CDN, no framing by other sites
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'",
}


def mount_playground(app: web.Application, admin_path: str, auth: bool) -> None:
    """Add the page's routes to the Flue application ``app``; ``admin_path`` is where the admin
    API is mounted in it, ``auth`` whether that API wants a token."""

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect(request.path + "/")

    async def config(request: web.Request) -> web.Response:
        prefix = request.path.removesuffix(f"{BASE}/config.json")
        body = {"admin": prefix + "/" + admin_path.strip("/"), "auth": auth, "dev": state_of(request).dev}
        return web.json_response(body, headers=HEADERS)

    app.router.add_get(BASE, redirect)
    app.router.add_get(f"{BASE}/", _file)
    app.router.add_get(f"{BASE}/config.json", config)
    app.router.add_get(BASE + "/{file:[a-z]+\\.(?:html|js|css)}", _file)


async def _file(request: web.Request) -> web.Response:
    name = request.match_info.get("file", "index.html")
    if name not in FILES:
        raise web.HTTPNotFound()  # rendered as the route_not_found envelope
    body = resources.files(__package__).joinpath(name).read_bytes()
    return web.Response(body=body, content_type=FILES[name], charset="utf-8", headers=HEADERS)
