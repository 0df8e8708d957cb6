"""Request-side helpers for channel kinds: exact bodies, signatures, secrets, results.

A channel handler gets the unconsumed aiohttp request. Verification failures
answer **bodyless** responses with the status alone (as Flue's channel
packages do), so a prober learns nothing but the status: raise
:class:`Reject` anywhere in a handler wrapped by :func:`handle`.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

log = logging.getLogger("flue.channels")

MIB = 1024 * 1024


class Reject(Exception):
    """Answer the request with this bodyless status (400, 401, 413, 415...)."""

    def __init__(self, status: int, why: str = ""):
        super().__init__(why or str(status))
        self.status = status


def media_type(request: web.Request) -> str:
    """The Content-Type before ``;``, lowercased ('' when absent)."""
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


async def read_body(request: web.Request, limit: int) -> bytes:
    """The exact request bytes, at most ``limit`` of them.

    A ``Content-Length`` that is not digits is a 400, one over the limit a 413
    (before reading anything); a streamed body that grows past the limit is a
    413 too, and a broken stream a 400.
    """
    declared = request.headers.get("Content-Length")
    if declared is not None:
        if not declared.isdigit():
            raise Reject(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise Reject(413, "body over the limit")
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.content.iter_chunked(64 * 1024):
            total += len(chunk)
            if total > limit:
                raise Reject(413, "body over the limit")
            chunks.append(chunk)
    except Reject:
        raise
    except Exception as exc:  # a client that hung up mid-body, a malformed chunked encoding
        raise Reject(400, f"unreadable body: {type(exc).__name__}") from None
    return b"".join(chunks)


def hmac_digest(secret: str | bytes, message: bytes, algorithm: str = "sha256") -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, getattr(hashlib, algorithm)).digest()


def signature_matches(expected: bytes, given: bytes | None) -> bool:
    """Constant-time comparison of two digests (a missing one never matches)."""
    return given is not None and hmac.compare_digest(expected, given)


def hex_bytes(text: str | None, length: int) -> bytes | None:
    """``length`` bytes from hex (either case), or None when it is not exactly that."""
    if text is None or len(text) != 2 * length:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


class ChannelNotConfigured(Exception):
    """A secret's env var is unset: the channel cannot verify or answer anything."""


@dataclass(frozen=True)
class Secret:
    """A secret given in code (``value``) or named by an env var (``env``), read when used."""

    value: str | None = None
    env: str | None = None

    def __post_init__(self) -> None:
        from flue.redaction import declare

        declare(value=self.value, env=self.env)  # scrubbed wherever data leaves the process

    def get(self) -> str:
        if self.value:
            return self.value
        found = os.environ.get(self.env or "")
        if not found:
            raise ChannelNotConfigured(f"the environment variable {self.env} is not set")
        return found

    def __repr__(self) -> str:  # never print the secret itself
        return f"Secret(env={self.env!r})" if self.env else "Secret(<given>)"


def json_safe(value: Any) -> Any:
    """``value`` with non-finite numbers as None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def respond(value: Any) -> web.StreamResponse:
    """A callback's return value as a response: None -> empty 200, a response as is, else JSON."""
    if value is None:
        return web.Response(status=200)
    if isinstance(value, web.StreamResponse):
        return value
    return web.json_response(json_safe(value), dumps=lambda v: json.dumps(v, allow_nan=False))


async def call_with(fn: Callable[..., Any], **available: Any) -> Any:
    """Call ``fn`` with the keyword arguments it names (all of them with ``**kwargs``); await it if needed."""
    params = inspect.signature(fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = available
    else:
        kwargs = {k: v for k, v in available.items() if k in params}
    out = fn(**kwargs)
    return await out if inspect.isawaitable(out) else out


def runtime_of(request: web.Request) -> Runtime:
    """The runtime serving this request."""
    from flue.server.state import state_of

    return state_of(request).runtime


def track(request: web.Request, task: Any) -> None:
    """Keep a background task of this request (a reply) alive until shutdown drains it."""
    from flue.server.state import state_of

    state_of(request).track_run(task)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def handle(fn: Handler) -> Handler:
    """Wrap a route handler: :class:`Reject` becomes a bodyless status, an unset secret a
    logged 500 whose dev hint names the env var (never its value)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        from flue.server.errors import internal_error

        try:
            return await fn(request)
        except Reject as exc:
            return web.Response(status=exc.status)
        except ChannelNotConfigured as exc:
            name = request.match_info.get("name", "?")
            log.error("channel %r cannot serve %s: %s", name, request.path, exc)
            raise internal_error(dev=f"channel '{name}': {exc}") from None

    return handler
