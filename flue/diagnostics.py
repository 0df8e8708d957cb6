"""Diagnostics: every problem found in a project, with file, line and a hint.

A diagnostic is data, never a traceback. Discovery collects them; `flue info`
prints them; the server refuses to start while any has severity ``error``.
Codes are stable strings (``agent.unknown-key``) that tools may match on.
"""

from __future__ import annotations

from typing import Literal

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


def pydantic_diagnostics(
    exc: Exception, *, file: str | None, code_prefix: str, line_of: dict[str, int] | None = None
) -> list[Diagnostic]:
    """Turn a pydantic ValidationError into diagnostics naming each key path."""
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
            out.append(
                Diagnostic(
                    code=f"{code_prefix}.unknown-key",
                    file=file,
                    line=line,
                    message=f"unknown key '{path}'",
                    hint="remove it or check its spelling against the documented keys",
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
