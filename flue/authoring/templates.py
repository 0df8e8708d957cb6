"""Jinja2 is the template language of instructions, skills and YAML workflows.

One sandboxed environment with ``StrictUndefined`` so a misspelt variable is an
error rather than an empty string. Two rules make templates over JSON data do
what their authors mean:

- ``a.b`` looks up the *key* ``b`` of a mapping before its attribute, so
  ``{{ steps.shopping.data.items }}`` is the ``items`` list of the data, not the
  dict's ``items`` method;
- a value that is a function (a method reached by ``a.b`` on a mapping without
  that key) is an error that names the expression and suggests ``a['b']``,
  never a ``<built-in method ...>`` string or a value that cannot be stored.

Rendering errors are :class:`TemplateFailure`: the template's source and what
went wrong, for messages that name the expression.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from flue.diagnostics import Diagnostic


class TemplateFailure(Exception):
    """A template could not be rendered: ``source`` is the template, the message says why."""

    def __init__(self, source: str, problem: str):
        self.source = source
        self.problem = problem
        super().__init__(f"template {source.strip()!r}: {problem}")


def _no_functions(value: Any) -> Any:
    from jinja2 import TemplateError, Undefined

    if callable(value) and not isinstance(value, type | Undefined):
        name = getattr(value, "__name__", "a function")
        raise TemplateError(
            f"the expression gives the function '{name}', not a value: a key missing from the data "
            f"reaches a method of the same name; write data['{name}'] for a key, or check the key exists"
        )
    return value


def make_environment(undefined: Any = None) -> Any:  # -> jinja2.sandbox.SandboxedEnvironment
    """A sandboxed environment with Flue's rules (keys first, no functions, ``tojson``);
    ``undefined`` defaults to ``StrictUndefined``."""
    from collections.abc import Mapping

    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    class FlueEnvironment(SandboxedEnvironment):
        def getattr(self, obj: Any, attribute: str) -> Any:
            # keys before attributes: JSON data is what templates read
            if isinstance(obj, Mapping) and isinstance(attribute, str):
                try:
                    return obj[attribute]
                except (KeyError, TypeError):
                    pass
            return super().getattr(obj, attribute)

    env = FlueEnvironment(undefined=undefined or StrictUndefined, keep_trailing_newline=True, autoescape=False,
                          finalize=_no_functions)
    env.filters["tojson"] = _tojson
    return env


@lru_cache(maxsize=1)
def environment():  # -> jinja2.sandbox.SandboxedEnvironment
    return make_environment()


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
    """Render a template string. Raises :class:`TemplateFailure` (undefined names, functions...).

    ``env``: another Jinja2 environment (channels use a lenient one: payload
    fields are often absent)."""
    if "{" not in source:
        return source
    from jinja2 import TemplateError

    try:
        return (env or environment()).from_string(source).render(**variables)
    except TemplateError as exc:
        raise TemplateFailure(source, exc.message or str(exc)) from None


def evaluate(source: str, variables: dict[str, Any], *, env: Any = None) -> Any:
    """Render a value, keeping native types when it is exactly one ``{{ expr }}``."""
    stripped = source.strip()
    if stripped.startswith("{{") and stripped.endswith("}}") and stripped.count("{{") == 1:
        from jinja2 import TemplateError

        try:
            expr = (env or environment()).compile_expression(stripped[2:-2].strip(), undefined_to_none=False)
            return _no_functions(expr(**variables))
        except TemplateError as exc:
            raise TemplateFailure(source, exc.message or str(exc)) from None
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
