"""The HTTP error envelope and the middleware that renders every error with it.

Every Flue HTTP error is JSON of one shape::

    {"error": {"type": "agent_not_found", "message": "...", "details": "...", "dev": "..."}}

``type`` is a stable snake_case identifier, ``message`` a one-sentence
caller-safe summary, ``details`` longer caller-safe guidance (always present,
may be empty), ``dev`` developer-only hints, sent only when the app runs in dev
mode (``app[DEV_MODE] = True``) and the error has them. ``meta`` carries
structured data on the rare errors that need it.

Handlers raise :class:`HttpError` (or use the helpers below: ``invalid_request``,
``agent_not_found``...). :func:`error_middleware` renders it, turns aiohttp's own
404/405 into ``route_not_found``/``method_not_allowed`` (with ``Allow``), a body
aiohttp could not decode (bad gzip) into a 400 ``invalid_request``, and
anything else into a 500 ``internal_error`` that says nothing about the
server's internals (the exception is logged; its text goes to ``dev`` in dev
mode only). An exception that is not an :class:`HttpError` but has a string
``error_type`` attribute (:class:`flue.errors.FlueError`: session, model and
submission errors) renders as a 500 with that type and its message, as the
TypeScript Flue does, or with its ``http_status`` and ``http_headers`` when it
has them (backpressure: ``queue_full`` 429, ``overloaded`` 503, with
``Retry-After``).

Every error response carries ``X-Content-Type-Options: nosniff``, and no known secret
(:mod:`flue.redaction`: a provider's or a workflow's text that quoted one says ``[redacted]``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from pydantic import BaseModel

from flue.redaction import scrub

log = logging.getLogger("flue.server")

#: App key: render ``dev`` hints and internal exception text in error envelopes.
DEV_MODE = web.AppKey("flue_dev_mode", bool)

NOSNIFF = {"X-Content-Type-Options": "nosniff"}

#: The documented error types and their HTTP statuses.
ERROR_STATUS: dict[str, int] = {
    "invalid_request": 400,
    "invalid_json": 400,
    "agent_not_found": 404,
    "workflow_not_found": 404,
    "route_not_found": 404,
    "run_not_found": 404,
    "stream_not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "queue_full": 429,
    "internal_error": 500,
    "run_store_unavailable": 501,
    "overloaded": 503,
}


class ErrorBody(BaseModel):
    type: str
    message: str
    details: str = ""
    dev: str | None = None
    meta: dict[str, Any] | None = None


class ErrorEnvelope(BaseModel):
    error: ErrorBody

    def wire(self) -> dict[str, Any]:
        return scrub(self.model_dump(mode="json", exclude_none=True))  # never a known secret (flue.redaction)


class HttpError(Exception):
    """An error with a place in the envelope: raise it from any handler or middleware."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        details: str = "",
        *,
        dev: str | None = None,
        meta: dict[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.dev = dev
        self.meta = meta
        self.headers = dict(headers or {})

    def envelope(self, *, dev_mode: bool = False) -> ErrorEnvelope:
        return ErrorEnvelope(
            error=ErrorBody(
                type=self.type,
                message=self.message,
                details=self.details,
                dev=self.dev if dev_mode and self.dev else None,
                meta=self.meta,
            )
        )

    def response(self, *, dev_mode: bool = False) -> web.Response:
        return web.json_response(
            self.envelope(dev_mode=dev_mode).wire(), status=self.status, headers={**self.headers, **NOSNIFF}
        )

    def __repr__(self) -> str:
        return f"HttpError({self.status}, {self.type!r}, {self.message!r})"


def error(type: str, message: str, details: str = "", **kwargs: Any) -> HttpError:
    """An :class:`HttpError` of a documented ``type``, with its documented status."""
    return HttpError(ERROR_STATUS[type], type, message, details, **kwargs)


# -- helpers, one per documented type -------------------------------------------


def invalid_request(message: str, details: str = "", **kwargs: Any) -> HttpError:
    return error("invalid_request", message, details, **kwargs)


def invalid_json(details: str = "", **kwargs: Any) -> HttpError:
    return error("invalid_json", "Request body is not valid JSON.", details, **kwargs)


def _listing(kind: str, names: Iterable[str] | None) -> str | None:
    if names is None:
        return None
    names = sorted(names)
    return f"Available {kind}: " + (", ".join(f'"{n}"' for n in names) if names else "(none)") + "."


def _dev_hint(*parts: str | None) -> str | None:
    return " ".join(p for p in parts if p) or None


def agent_not_found(name: str, available: Iterable[str] | None = None, *, not_exposed: str | None = None) -> HttpError:
    """``not_exposed``: the file of an agent that exists but is not HTTP-exposed (told in dev mode only)."""
    hint = None
    if not_exposed:
        hint = f'Agent "{name}" exists ({not_exposed}) but is not exposed over HTTP: add `http: true` to its frontmatter.'
    return error(
        "agent_not_found",
        f'Agent "{name}" is not registered.',
        "Verify the agent name is correct.",
        dev=_dev_hint(hint, _listing("agents", available)),
    )


def workflow_not_found(name: str, available: Iterable[str] | None = None, *, not_exposed: str | None = None) -> HttpError:
    """``not_exposed``: the file of a workflow that exists but is not HTTP-exposed (told in dev mode only)."""
    hint = None
    if not_exposed:
        how = "`http = True` at its top level" if not_exposed.endswith(".py") else "`http: true`"
        hint = f'Workflow "{name}" exists ({not_exposed}) but is not exposed over HTTP: add {how}.'
    return error(
        "workflow_not_found",
        f'Workflow "{name}" is not registered.',
        "Verify the workflow name is correct.",
        dev=_dev_hint(hint, _listing("workflows", available)),
    )


def route_not_found(method: str, path: str) -> HttpError:
    return error("route_not_found", f"No route matches {method} {path}.", "Verify the request method and path are correct.")


def run_not_found(run_id: str) -> HttpError:
    return error(
        "run_not_found", f'Run "{run_id}" was not found.', "Verify the run id is correct and its history is still available."
    )


def stream_not_found(path: str) -> HttpError:
    return error(
        "stream_not_found",
        f'Event stream "{path}" was not found.',
        "Streams are created when their agent instance receives its first prompt or their workflow run starts.",
    )


def method_not_allowed(method: str, allowed: Iterable[str]) -> HttpError:
    allow = ", ".join(sorted({m.upper() for m in allowed}))
    return error(
        "method_not_allowed",
        f"HTTP method {method} is not allowed on this endpoint.",
        "This endpoint accepts " + ", ".join(f'"{m}"' for m in sorted({m.upper() for m in allowed})) + " only.",
        headers={"Allow": allow},
    )


def payload_too_large(details: str = "") -> HttpError:
    # a fixed type: HTTPStatus(413).phrase differs across Python versions ("Content Too Large" in 3.13)
    return error("payload_too_large", "The request body is too large.", details)


def unsupported_media_type(content_type: str | None) -> HttpError:
    return error(
        "unsupported_media_type",
        "Request body must be sent as application/json.",
        (f'Received Content-Type: "{content_type}". ' if content_type else "No Content-Type header was sent. ")
        + 'Send the request body as JSON with the header "Content-Type: application/json", or omit the body '
        "entirely (and the Content-Type header) if the request doesn't have a payload.",
    )


def run_store_unavailable() -> HttpError:
    return error(
        "run_store_unavailable",
        "Run history is not available in this runtime.",
        "Workflow runs need a persistence adapter with a run store.",
    )


def internal_error(dev: str | None = None) -> HttpError:
    return error("internal_error", "An internal error occurred.",
                 "The server encountered an unexpected error while handling this request.", dev=dev)


def flue_error_type(error: Mapping[str, Any]) -> str | None:
    """The wire type of a recorded failure (a run record's or a settled submission's
    ``{name, message, type?}``, :func:`flue.errors.serialize_error`) when it is one of Flue's
    own errors, whose message is caller-safe by contract. None for anything else."""
    kind = error.get("type")
    if isinstance(kind, str) and re.fullmatch(r"[a-z][a-z0-9_]*", kind):
        return kind
    return None


def failure(recorded: Mapping[str, Any], message: str, details: str = "", **kwargs: Any) -> HttpError:
    """A recorded failure as a 500: Flue's own errors keep their type and message; anything
    else is ``internal_error`` with ``message``, its text only in the ``dev`` hint."""
    type_ = flue_error_type(recorded)
    if type_ is not None:
        return HttpError(500, type_, str(recorded.get("message") or message), details, **kwargs)
    name, text = recorded.get("name"), recorded.get("message")
    return error("internal_error", message, details, dev=f"{name}: {text}" if name else None, **kwargs)


# -- rendering -----------------------------------------------------------------


def _snake(phrase: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", phrase.lower()).strip("_")


def from_http_exception(request: web.Request, exc: web.HTTPException) -> HttpError:
    """aiohttp's own errors (router 404/405, body too large...) as envelopes."""
    if isinstance(exc, web.HTTPMethodNotAllowed):
        return method_not_allowed(request.method, exc.allowed_methods)
    if exc.status == 404:
        return route_not_found(request.method, request.path)
    if exc.status == 415:
        return unsupported_media_type(request.headers.get("Content-Type"))
    if exc.status == 400:
        return invalid_request(exc.reason or "Bad request.")
    if exc.status == 413:
        return payload_too_large(exc.text or "")
    try:
        type_ = _snake(HTTPStatus(exc.status).phrase)
    except ValueError:
        type_ = "http_error"
    # keep protocol headers aiohttp set (e.g. Retry-After), never its text/plain Content-Type
    headers = {k: v for k, v in exc.headers.items() if k.lower() not in ("content-type", "content-length")}
    return HttpError(exc.status, type_, exc.reason or HTTPStatus(exc.status).phrase, headers=headers)


def is_dev_mode(request: web.Request) -> bool:
    return bool(request.config_dict.get(DEV_MODE, False))


def render_exception(request: web.Request, exc: BaseException) -> web.Response:
    """The envelope response for any exception a handler let escape (logging unknown ones)."""
    dev_mode = is_dev_mode(request)
    if isinstance(exc, HttpError):
        return exc.response(dev_mode=dev_mode)
    if isinstance(exc, web.HTTPException):
        return from_http_exception(request, exc).response(dev_mode=dev_mode)
    if isinstance(exc, RequestPayloadError):
        # the body's framing or encoding was broken (bad chunk, bad gzip): the caller's request
        reason = str(exc).replace("400, message:", "").strip().splitlines()[0] if str(exc) else ""
        return invalid_request("The request body could not be read.", reason[:300]).response(dev_mode=dev_mode)
    error_type = getattr(exc, "error_type", None)
    if isinstance(error_type, str) and error_type:
        # a typed Flue error from below the HTTP layer: its message is caller-safe by contract; a 500
        # unless it names its status (backpressure: 429/503 with Retry-After)
        status = getattr(exc, "http_status", 500)
        headers = getattr(exc, "http_headers", None)
        return HttpError(
            status if isinstance(status, int) and 400 <= status <= 599 else 500, error_type, str(exc),
            str(getattr(exc, "details", "") or ""), headers=headers if isinstance(headers, Mapping) else None,
        ).response(dev_mode=dev_mode)
    log.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return internal_error(dev=f"{type(exc).__name__}: {exc}").response(dev_mode=dev_mode)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: Request key set once a response for the request has been prepared (its headers sent).
PREPARED = "flue.response_prepared"


async def mark_prepared(request: web.Request, _response: web.StreamResponse) -> None:
    """``on_response_prepare`` signal: after this, an error can no longer become an envelope."""
    request[PREPARED] = True


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error as the envelope. Add it first (outermost) in the app's middlewares
    and :func:`mark_prepared` to its ``on_response_prepare`` signal."""
    try:
        return await handler(request)
    except asyncio.CancelledError:
        raise
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and other non-errors pass through untouched
        if request.get(PREPARED):
            raise  # a stream or socket already started: aiohttp ends the connection
        return render_exception(request, exc)
    except Exception as exc:
        if request.get(PREPARED):
            # The status line went out (an SSE stream, a socket): an envelope cannot follow.
            # Log it and let aiohttp end the connection; stream readers resume from their offset.
            log.error("error after the response started (%s %s)", request.method, request.path, exc_info=exc)
            raise
        return render_exception(request, exc)
