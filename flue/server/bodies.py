"""Request parsing shared by the invocation routes: ``?wait``, JSON bodies, validation errors.

:func:`parse_json` is the one JSON reader of every HTTP boundary (request bodies here,
channel webhooks in plugins): the rules of :mod:`flue.strict_json`, failures as the
400 ``invalid_json`` envelope.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from flue import strict_json
from flue.server.errors import invalid_json, invalid_request, payload_too_large, unsupported_media_type


def wait_for_result(request: web.Request) -> bool:
    """``?wait=result`` -> True; no ``wait`` -> False; anything else is a 400."""
    values = request.rel_url.query.getall("wait", [])
    if not values:
        return False
    if values == ["result"]:
        return True
    raise invalid_request(
        f"Invalid wait value {', '.join(repr(v) for v in values)}.",
        "Use ?wait=result to wait for the result, or omit wait for a 202 admission.",
    )


def is_json_type(content_type: str) -> bool:
    """``application/json`` or an ``application/*+json`` type (parameters already stripped)."""
    ct = content_type.lower()
    return ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))


async def read_json_body(request: web.Request, *, required: bool) -> Any | None:
    """The parsed JSON body, or None when the body is empty and not ``required``.

    A body (or a required one) that is not declared JSON is a 415; malformed JSON is
    ``invalid_json``; a required body that is empty is ``invalid_request``.
    """
    return json_body(request, await read_body(request), required=required)


async def read_body(request: web.Request) -> bytes:
    """The request body, at most the app's ``client_max_size`` (``limits.body``: 413 past it).

    Read from the stream rather than with ``request.read()``, which keeps the bytes on
    the request: aiohttp holds a kept-alive connection's last request until the next one
    arrives, so every idle connection would keep its last body (10 MiB prompts...) alive.
    """
    limit = request.client_max_size
    if request.content_length is not None and request.content_length > limit:
        raise payload_too_large(f"Maximum request body size {limit} exceeded, actual body size "
                                f"{request.content_length}.")
    body = bytearray()
    while chunk := await request.content.readany():
        body += chunk
        if len(body) > limit:
            raise payload_too_large(f"Maximum request body size {limit} exceeded.")
    return bytes(body)


def json_body(request: web.Request, raw: bytes, *, required: bool) -> Any | None:
    """:func:`read_json_body` for a body already read (to check its size first)."""
    declared_json = is_json_type(request.content_type)
    if not raw.strip():
        if not required:
            return None
        if not declared_json:
            raise unsupported_media_type(request.headers.get("Content-Type"))
        raise invalid_request("The request body is required.", "Send a JSON object.")
    if not declared_json:
        raise unsupported_media_type(request.headers.get("Content-Type"))
    return parse_json(raw)


def parse_json(raw: bytes | str, *, max_depth: int = strict_json.MAX_DEPTH) -> Any:
    """Parse a request body (or any text from a caller) under Flue's boundary rules.

    Strict JSON (no ``NaN``/``Infinity``), at most ``max_depth`` levels of nesting,
    number literals of at most 100 characters, UTF-8 without lone surrogates
    (:mod:`flue.strict_json`). Anything else raises the 400 ``invalid_json``
    :class:`~flue.server.errors.HttpError`, which the error middleware renders as
    the envelope: channel handlers can let it propagate."""
    try:
        return strict_json.loads(raw, max_depth=max_depth)
    except strict_json.JsonRuleError as exc:
        raise invalid_json(_sentence(str(exc))) from None


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def validation_details(exc: ValidationError) -> str:
    """Flattened, caller-safe issue messages (never the raw validation object or the input)."""
    parts = []
    for e in exc.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)
