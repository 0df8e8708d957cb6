"""Validation of ``sandbox: {kind: ..., <options>}`` with pydantic, and a clear error."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class SandboxOptionsError(ValueError):
    """Bad options for a sandbox kind; the message lists every problem."""


def parse_options(model: type[M], options: dict[str, Any] | None, kind: str) -> M:
    try:
        return model.model_validate(options or {})
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "<options>"
            msg = "unknown option" if err["type"] == "extra_forbidden" else err["msg"]
            lines.append(f"- {where}: {msg}")
        known = ", ".join(sorted(model.model_fields))
        raise SandboxOptionsError(
            f"sandbox '{kind}': invalid options:\n" + "\n".join(lines) + f"\n(known options: {known})"
        ) from None
