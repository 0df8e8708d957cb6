"""Jinja2 is the template language of instructions, skills and YAML workflows.

One sandboxed environment with ``StrictUndefined`` so a misspelt variable is an
error rather than an empty string.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flue.diagnostics import Diagnostic


@lru_cache(maxsize=1)
def environment():  # -> jinja2.sandbox.SandboxedEnvironment
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters["tojson"] = _tojson
    return env


def _tojson(value: Any, indent: int | None = None) -> str:
    import json

    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


def check_template(source: str, *, file: str, line_offset: int = 0, what: str = "template") -> list[Diagnostic]:
    """Compile a template; a syntax error becomes a diagnostic with its line."""
    from jinja2 import TemplateSyntaxError

    try:
        environment().parse(source)
    except TemplateSyntaxError as exc:
        line = (exc.lineno or 1) + line_offset - 1 if exc.lineno else None
        return [
            Diagnostic(
                code="template.syntax",
                file=file,
                line=line,
                message=f"Jinja2 syntax error in {what}: {exc.message}",
                hint="check the {{ }} and {% %} pairs on that line",
            )
        ]
    return []


#: What agent instructions may use: ``{{ agent.name }}``, ``{{ agent.description }}``,
#: ``{{ cwd }}`` (the sandbox working directory), ``{{ date }}`` (today, ISO 8601) and
#: ``{{ instance.id }}`` / ``{{ instance.conversation }}`` (the agent instance: see flue.instance).
INSTRUCTION_VARIABLES = ("agent", "cwd", "date", "instance")


def check_variables(source: str, allowed: tuple[str, ...], *, file: str, what: str) -> list[Diagnostic]:
    """A name the template uses that it will not be given is a diagnostic (rendering would fail)."""
    from jinja2 import TemplateSyntaxError, meta

    try:
        unknown = sorted(meta.find_undeclared_variables(environment().parse(source)) - set(allowed))
    except TemplateSyntaxError:
        return []  # reported by check_template
    if not unknown:
        return []
    return [
        Diagnostic(
            code="template.undefined",
            file=file,
            message=f"{what} use{'s' if len(unknown) == 1 else ''} undefined variable{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(u) for u in unknown)}",
            hint=f"available: {', '.join(allowed)}; write literal braces as {{% raw %}}{{{{ ... }}}}{{% endraw %}}",
        )
    ]


def render(source: str, variables: dict[str, Any], *, env: Any = None) -> str:
    """Render a template string. Raises jinja2 errors on undefined names.

    ``env``: another Jinja2 environment (channels use a lenient one: payload
    fields are often absent)."""
    if "{" not in source:
        return source
    return (env or environment()).from_string(source).render(**variables)


def evaluate(source: str, variables: dict[str, Any], *, env: Any = None) -> Any:
    """Render a value, keeping native types when it is exactly one ``{{ expr }}``."""
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        expr = (env or environment()).compile_expression(stripped[2:-2].strip(), undefined_to_none=False)
        return expr(**variables)
    return render(source, variables, env=env)


def evaluate_tree(value: Any, variables: dict[str, Any], *, env: Any = None) -> Any:
    """Evaluate templates inside strings, lists and mappings."""
    if isinstance(value, str):
        return evaluate(value, variables, env=env)
    if isinstance(value, list):
        return [evaluate_tree(v, variables, env=env) for v in value]
    if isinstance(value, dict):
        return {k: evaluate_tree(v, variables, env=env) for k, v in value.items()}
    return value


def template_strings(value: Any) -> list[str]:
    """Every string inside a YAML value (strings, lists, mappings): the templates to check."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in template_strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in template_strings(v)]
    return []
