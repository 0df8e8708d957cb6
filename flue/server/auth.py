"""Declarative HTTP auth for agents and workflows (``http: {auth: {bearer_env: NAME}}``).

An agent or workflow declares::

    http:
      auth:
        bearer_env: SUPPORT_TOKEN     # the environment variable holding the token
        header: authorization         # optional; the default

and every HTTP request for it (prompts, invocations, stream reads, WebSocket
upgrades, and ``/runs/<runId>`` of its runs) must carry the token:

- with ``header: authorization`` the value must be ``Bearer <token>``
  (the scheme is case-insensitive);
- with any other header (``x-api-key``...) the value is the token itself, or
  ``Bearer <token>``;
- a WebSocket upgrade may instead carry ``?token=<token>``, because browsers
  cannot set headers on a socket. The query token counts only for a complete
  handshake (``GET``, ``Connection: upgrade``, ``Upgrade: websocket``, a valid
  ``Sec-WebSocket-Key`` and version) on a route that then upgrades it: a plain
  read that merely carries an ``Upgrade`` header is not let in by ``?token=``
  (a token in a URL ends up in logs and proxies' caches).

The token is read from the environment on each request, so ``flue dev``'s
``.env`` reloads take effect. It is compared in constant time. When the
variable is unset or empty every request is denied (never allowed) and the
server logs a warning naming the variable once; in dev mode the 401's ``dev``
hint says the variable is unset (its name, never a value).

Anything beyond a shared bearer token (sessions, signed URLs, rate limits)
belongs in a plugin's ``flue_app`` middleware, which runs before Flue's
routes.
"""

from __future__ import annotations

import hmac
import logging
import os

from aiohttp import web

from flue.authoring.agents import AuthSpec, HttpSpec
from flue.server.errors import HttpError

log = logging.getLogger("flue.server")

_warned: set[str] = set()


def unauthorized(details: str = "", *, dev: str | None = None) -> HttpError:
    """401 ``unauthorized`` with ``WWW-Authenticate: Bearer`` (``dev``: a hint for dev mode only)."""
    return HttpError(
        401,
        "unauthorized",
        "Authentication is required.",
        details or "Send the token as 'Authorization: Bearer <token>'.",
        dev=dev,
        headers={"WWW-Authenticate": "Bearer"},
    )


def unset_hint(spec: AuthSpec | None) -> str | None:
    """The dev-mode hint of a 401 whose token variable is unset on the server (the name only,
    never a value), else None."""
    if spec is None or not spec.bearer_env or os.environ.get(spec.bearer_env, ""):
        return None
    return (f"The environment variable {spec.bearer_env} (http.auth.bearer_env) is not set on the server, "
            "so every request is refused: set it in .env or the shell, then send it as the bearer token.")


def auth_of(http: HttpSpec | None) -> AuthSpec | None:
    """The declarative auth to enforce, or None when the definition declares none."""
    if http is None or http.auth is None or not http.auth.bearer_env:
        return None
    return http.auth


def is_websocket_handshake(request: web.Request) -> bool:
    """A complete WebSocket opening handshake, one aiohttp will upgrade (RFC 6455 4.2.1)."""
    if request.method != "GET":
        return False
    return web.WebSocketResponse().can_prepare(request).ok


def _presented(request: web.Request, spec: AuthSpec, *, upgrade: bool) -> str | None:
    header = spec.header.lower()
    value = request.headers.get(header)
    if value is not None:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer" and rest:
            return rest.strip()
        if header != "authorization":
            return value.strip()
        return None
    if upgrade and is_websocket_handshake(request):
        return request.rel_url.query.get("token")
    return None


def accepts(request: web.Request, spec: AuthSpec | None, *, upgrade: bool = False) -> bool:
    """Whether ``request`` satisfies ``spec`` (no spec: always). ``upgrade``: the caller will upgrade
    this request to a WebSocket when it is a complete handshake, so ``?token=`` may count."""
    if spec is None:
        return True
    assert spec.bearer_env is not None
    expected = os.environ.get(spec.bearer_env, "")
    if not expected:
        if spec.bearer_env not in _warned:
            _warned.add(spec.bearer_env)
            log.warning(
                "flue: HTTP auth needs the environment variable %s, which is not set: "
                "every request to what it protects is refused until it is",
                spec.bearer_env,
            )
        return False
    presented = _presented(request, spec, upgrade=upgrade)
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))


def require(request: web.Request, spec: AuthSpec | None, *, upgrade: bool = False) -> None:
    """Raise 401 unless ``request`` satisfies ``spec`` (``upgrade`` as for :func:`accepts`)."""
    if not accepts(request, spec, upgrade=upgrade):
        raise unauthorized(dev=unset_hint(spec))
