"""The root of Flue's own errors, and how any error is written into events and records.

A :class:`FlueError` carries its wire type (``error_type``, snake_case, the
``type`` of the HTTP error envelope) and a message that is caller-safe by
contract: it may be shown to whoever sent the request. Anything else raised
inside an operation or a workflow is reported by class name and message in
events (as Flue does) but becomes a generic ``internal_error`` over HTTP.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FlueError(Exception):
    """Base class of Flue's own errors; subclasses set ``error_type``.

    Derive from it only where the message is caller-safe. The server answers an escaped
    FlueError with its ``error_type`` and message, and ``http_status`` (default 500)."""

    error_type: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __str__(self) -> str:  # the message as given, also under KeyError (which would quote it)
        return Exception.__str__(self)

    def to_dict(self) -> dict[str, Any]:
        return serialize_error(self)


class AgentNotFound(FlueError, KeyError):
    """No agent of that name in the project."""

    error_type = "agent_not_found"
    http_status = 404


def error_type_of(exc: BaseException) -> str | None:
    """The wire type of one of Flue's own errors (anything with a string ``error_type``), else None."""
    value = getattr(exc, "error_type", None)
    return value if isinstance(value, str) else None


def serialize_error(exc: BaseException) -> dict[str, Any]:
    """``{name, message}`` (Flue's serialized error), plus ``type`` for Flue's own errors."""
    name = type(exc).__name__
    out: dict[str, Any] = {"name": name, "message": str(exc) or name}
    kind = error_type_of(exc)
    if kind is not None:
        out["type"] = kind
    return out
