"""Diagnostics: every problem found in a project, with file, line and a hint.

A diagnostic is data, never a traceback. Discovery collects them; `flue info`
prints them; the server refuses to start while any has severity ``error``.
Codes are stable strings (``agent.unknown-key``) that tools may match on.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel

Severity = Literal["error", "warning"]


class Diagnostic(BaseModel):
    severity: Severity = "error"
    code: str
    file: str | None = None
    line: int | None = None
    message: str
    hint: str | None = None

    def render(self) -> str:
        where = self.file or "<project>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        text = f"{where}: {self.severity}[{self.code}] {self.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text


class ProjectError(Exception):
    """Raised when a project with error diagnostics is asked to run."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        lines = "\n".join(d.render() for d in diagnostics if d.severity == "error")
        super().__init__(f"the project has errors:\n{lines}")


def did_you_mean(word: str, choices: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest of ``choices`` to a misspelt ``word`` (difflib), or None."""
    found = difflib.get_close_matches(word, sorted(set(choices)), n=1, cutoff=cutoff)
    return found[0] if found else None


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``"did you mean 'x'? "`` for a hint, or an empty string."""
    match = did_you_mean(word, choices)
    return f"did you mean '{match}'? " if match else ""


def docs_hint(page: str) -> str:
    """Where the valid keys are listed: a page of ``flue docs``."""
    return f"`flue docs read {page}` lists the valid keys"


def pydantic_diagnostics(
    exc: Exception, *, file: str | None, code_prefix: str, line_of: dict[str, int] | None = None,
    schema: type[BaseModel] | None = None, docs: str | None = None,
) -> list[Diagnostic]:
    """Turn a pydantic ValidationError into diagnostics naming each key path. With ``schema``
    (the validated model) an unknown key gets a "did you mean" among the keys valid there;
    ``docs`` names the ``flue docs`` page that lists them."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return [Diagnostic(code=f"{code_prefix}.invalid", file=file, message=str(exc))]
    out: list[Diagnostic] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
        # Union branches add their type names to the location; keep the key path.
        path = ".".join(p for p in loc if not _is_type_tag(p))
        line = line_of_path(line_of or {}, path)
        if err["type"] == "extra_forbidden":
            *parent, key = path.split(".") if path else [""]
            valid = keys_at(schema, parent) if schema is not None else []
            hint = suggestion(key, valid) + "remove it or check its spelling"
            hint += f"; {docs_hint(docs)}" if docs else " against the documented keys"
            out.append(
                Diagnostic(
                    code=f"{code_prefix}.unknown-key",
                    file=file,
                    line=line,
                    message=f"unknown key '{path}'",
                    hint=hint,
                )
            )
        elif err["type"] == "missing":
            out.append(
                Diagnostic(
                    code=f"{code_prefix}.missing-key",
                    file=file,
                    line=line if line is not None else (1 if file else None),
                    message=f"missing required key '{path}'",
                    hint=f"add '{path.rsplit('.', 1)[-1]}: ...' to {'the frontmatter' if code_prefix in ('agent', 'skill') else 'the file'}",
                )
            )
        else:
            out.append(
                Diagnostic(
                    code=f"{code_prefix}.wrong-type",
                    file=file,
                    line=line,
                    message=f"'{path or '<root>'}': {err['msg']}",
                    hint=f"got {err.get('input')!r}"[:200] if "input" in err else None,
                )
            )
    return _dedupe(out)


def keys_at(schema: type[BaseModel], parts: list[str]) -> list[str]:
    """The keys a model accepts at a key path, following nested models (a ``dict[str, Model]``
    level is a name the user chose, then the model's keys)."""
    model: Any = schema
    named = False  # the next part is a key of a dict of models
    for part in parts:
        if named:
            named = False
            continue
        field = model.model_fields.get(part)
        if field is None:
            return []
        model, named = _model_in(field.annotation)
        if model is None:
            return []
    if named:
        return []
    return [f.alias or name for name, f in model.model_fields.items()]


def _model_in(annotation: Any) -> tuple[Any, bool]:
    """The model an annotation holds (itself, a union member, a dict's values: ``True``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            model, named = _model_in(arg)
            if model is not None:
                return model, named
    if (origin is dict and len(args) == 2) or (origin is list and len(args) == 1):
        model, _ = _model_in(args[-1])
        return model, model is not None  # the next part is a name or an index
    return None, False


def line_of_path(lines: dict[str, int], path: str) -> int | None:
    """The line of a key path, or of its nearest enclosing key listed in ``lines``."""
    parts = path.split(".") if path else []
    while parts:
        if (line := lines.get(".".join(parts))) is not None:
            return line
        parts.pop()
    return None


def _is_type_tag(part: str) -> bool:
    return part in {"str", "int", "bool", "float", "dict", "list", "literal[False]", "none"} or (
        "[" in part and part.endswith("]")
    ) or part[:1].isupper()


def _dedupe(items: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[str, str]] = set()
    out = []
    for d in items:
        key = (d.code, d.message)
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out
