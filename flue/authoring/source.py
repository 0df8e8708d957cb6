"""Reading YAML and frontmatter with line numbers for diagnostics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from flue.diagnostics import Diagnostic

_FRONTMATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)(?:\r?\n)?^---[ \t]*(?:\r?\n|\Z)", re.S | re.M)


def load_yaml(text: str, *, file: str, line_offset: int = 0) -> tuple[Any, dict[str, int], list[Diagnostic]]:
    """Parse YAML; return (data, top-level key -> line, diagnostics)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 + line_offset if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, {}, [
            Diagnostic(
                code="yaml.syntax",
                file=file,
                line=line,
                message=f"YAML syntax error: {problem}",
                hint="check indentation, colons and quoting on that line",
            )
        ]
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                lines[str(key.value)] = key.start_mark.line + 1 + line_offset
    return data, lines, []


def split_frontmatter(text: str) -> tuple[str | None, str, int]:
    """Return (frontmatter text or None, body, line number where the body starts)."""
    m = _FRONTMATTER.match(text)
    if not m:
        return None, text, 1
    body_start = text.count("\n", 0, m.end()) + 1
    return m.group(1), text[m.end() :], body_start


def read_text(path: Path, file: str) -> tuple[str | None, list[Diagnostic]]:
    try:
        return path.read_text(encoding="utf-8"), []
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Diagnostic(code="file.unreadable", file=file, message=f"cannot read file: {exc}")]


def load_yaml_mapping(
    path: Path, file: str, *, code: str, what: str
) -> tuple[dict[str, Any] | None, dict[str, int], list[Diagnostic]]:
    """Read a YAML file that must hold a mapping (empty file -> ``{}``)."""
    text, diags = read_text(path, file)
    if text is None:
        return None, {}, diags
    data, key_lines, diags = load_yaml(text, file=file)
    if diags:
        return None, {}, diags
    data = {} if data is None else data
    if not isinstance(data, dict):
        return None, {}, [Diagnostic(code=f"{code}.not-mapping", file=file, line=1, message=f"{what} must be a YAML mapping")]
    return data, key_lines, []


def load_markdown(path: Path, file: str) -> tuple[dict[str, Any] | None, str, dict[str, int], int, list[Diagnostic]]:
    """Parse a Markdown file with YAML frontmatter via python-frontmatter.

    Returns (metadata, body, key lines, body start line, diagnostics).
    """
    import frontmatter

    text, diags = read_text(path, file)
    if text is None:
        return None, "", {}, 1, diags
    raw, _, body_line = split_frontmatter(text)
    if raw is None and re.match(r"---[ \t]*\r?\n", text):
        return None, "", {}, 1, [
            Diagnostic(
                code="frontmatter.unclosed", file=file, line=1,
                message="the frontmatter opened on line 1 is never closed",
                hint="add a line holding only '---' after the last frontmatter key, before the body",
            )
        ]
    if raw is None:
        return {}, text, {}, 1, []
    data, key_lines, diags = load_yaml(raw, file=file, line_offset=1)
    if diags:
        return None, "", {}, body_line, diags
    if data is not None and not isinstance(data, dict):
        return None, "", {}, body_line, [
            Diagnostic(code="frontmatter.not-mapping", file=file, line=2, message="frontmatter must be a YAML mapping")
        ]
    post = frontmatter.loads(text)
    return dict(post.metadata), post.content, key_lines, body_line, []


def import_file(module_name: str, path: Path) -> Any:
    """Import the Python file at ``path`` as ``module_name`` (registered in ``sys.modules``,
    which forgets it again when the module raises)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def parse_python(path: Path, rel: str, *, code: str) -> tuple[Any, list[Diagnostic]]:
    """The syntax tree of a Python file (never imported), or None with a ``<code>.syntax``
    diagnostic."""
    import ast

    text, diags = read_text(path, rel)
    if text is None:
        return None, diags
    try:
        return ast.parse(text, filename=rel), []
    except SyntaxError as exc:
        return None, [Diagnostic(code=f"{code}.syntax", file=rel, line=exc.lineno, message=f"Python syntax error: {exc.msg}")]


def traceback_line(exc: BaseException, path: Path) -> int | None:
    """The line of ``path`` where loading it raised ``exc`` (the innermost frame in that file)."""
    if isinstance(exc, SyntaxError):
        return exc.lineno
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename) == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def resolve_source_root(root: Path) -> Path:
    """Where a project's agents, workflows and skills live: ``.flue/``, else ``src/``, else the root."""
    for candidate in (root / ".flue", root / "src"):
        if candidate.is_dir():
            return candidate
    return root
