"""``edit``: replace an exact string in a file.

``old_string`` must occur exactly once unless ``replace_all`` is set; when it
is missing or ambiguous the error says why and where (closest line, or the
lines of every occurrence). Read-before-write applies as for ``write``. Files
with CRLF line endings accept ``old_string``/``new_string`` written with plain
newlines. Bytes that are not valid UTF-8 survive an edit unchanged.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from flue.builtin_tools._common import (
    abs_path,
    check_may_change,
    cut_line,
    env_of,
    is_binary,
    mark_read,
    number,
    os_message,
    split_lines,
    stat_or_none,
)
from flue.tools import Tool, ToolContext, ToolError

SNIPPET_CONTEXT = 3  # lines shown around the change in the result
SNIPPET_MAX_LINES = 30
MAX_LISTED_OCCURRENCES = 10

DESCRIPTION = """Edit a file by replacing an exact string.

- `old_string` must match the file exactly, including whitespace and indentation (do not include the line-number prefix that read shows), and must occur exactly once; include more surrounding lines to make it unique, or set `replace_all` to replace every occurrence.
- The file must have been read with the read tool in this session.
- Returns the edited region with line numbers."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "File to edit"},
        "old_string": {"type": "string", "minLength": 1, "description": "Exact text to replace"},
        "new_string": {"type": "string", "description": "Replacement text (may be empty to delete)"},
        "replace_all": {"type": "boolean", "description": "Replace every occurrence (default false)"},
    },
    "required": ["path", "old_string", "new_string"],
    "additionalProperties": False,
}


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    path = abs_path(ctx, args["path"])
    old: str = args["old_string"]
    new: str = args["new_string"]
    replace_all = bool(args.get("replace_all", False))
    if old == new:
        raise ToolError("old_string and new_string are identical; there is nothing to change")
    st = await stat_or_none(env, path)
    if st is None:
        raise ToolError(f"{path} does not exist. Use write to create a file.")
    if st.is_directory:
        raise ToolError(f"{path} is a directory, not a file")
    check_may_change(ctx, path, st, "edit")
    try:
        data = await env.read_file_bytes(path)
    except OSError as exc:
        raise ToolError(os_message(exc, path)) from None
    if is_binary(data):
        raise ToolError(f"{path} is a binary file; edit only works on text")
    # surrogateescape round-trips bytes that are not UTF-8, so an edit never corrupts them.
    text = data.decode("utf-8", errors="surrogateescape")

    count = text.count(old)
    if count == 0 and "\r\n" in text and "\n" in old and "\r\n" not in old:
        old, new = old.replace("\n", "\r\n"), new.replace("\n", "\r\n")
        count = text.count(old)
    if count == 0:
        raise ToolError(_not_found(path, text, old))
    if count > 1 and not replace_all:
        lines = _occurrence_lines(text, old)
        shown = ", ".join(map(str, lines[:MAX_LISTED_OCCURRENCES])) + (", ..." if len(lines) > MAX_LISTED_OCCURRENCES else "")
        raise ToolError(
            f"old_string occurs {count} times in {path} (at lines {shown}). Include more surrounding "
            "context to make it unique, or set replace_all to true to replace every occurrence."
        )
    first = text.index(old)
    updated = text.replace(old, new) if replace_all else text.replace(old, new, 1)
    try:
        await env.write_file(path, updated.encode("utf-8", errors="surrogateescape"))
        mark_read(ctx, path, await env.stat(path))
    except OSError as exc:
        raise ToolError(os_message(exc, path)) from None
    replaced = count if replace_all else 1
    return (
        f"Edited {path}: replaced {replaced} occurrence{'s' if replaced != 1 else ''}.\n"
        + _snippet(updated, first, len(new))
    )


def _line_of(text: str, index: int) -> int:
    return text.count("\n", 0, index) + 1


def _occurrence_lines(text: str, old: str) -> list[int]:
    return [_line_of(text, m.start()) for m in re.finditer(re.escape(old), text)]


def _snippet(text: str, start: int, length: int) -> str:
    lines = split_lines(text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace"))
    first = _line_of(text, start)
    last = _line_of(text, start + max(length - 1, 0))
    lo = max(1, first - SNIPPET_CONTEXT)
    hi = min(len(lines), last + SNIPPET_CONTEXT, lo + SNIPPET_MAX_LINES - 1)
    if not lines:
        return "(the file is now empty)"
    return number([cut_line(ln, 500) for ln in lines[lo - 1 : hi]], lo)


def _not_found(path: str, text: str, old: str) -> str:
    msg = f"old_string was not found in {path}."
    squash = re.compile(r"\s+")
    if squash.sub(" ", old).strip() and squash.sub(" ", old).strip() in squash.sub(" ", text):
        return (
            msg + " It matches when whitespace is ignored: check indentation, tabs versus spaces and "
            "line breaks, and copy the text exactly as read shows it (without the line numbers)."
        )
    probe = next((ln.strip() for ln in old.split("\n") if ln.strip()), "")
    lines = text.split("\n")
    best = difflib.get_close_matches(probe, [ln.strip() for ln in lines], n=1, cutoff=0.6) if probe else []
    if best:
        n = next(i for i, ln in enumerate(lines, 1) if ln.strip() == best[0])
        return msg + f" The closest line is line {n}: {cut_line(lines[n - 1].rstrip(), 300)!r}. Read the file again and copy the text exactly."
    return msg + " Read the file again and copy the text to replace exactly."


def make() -> Tool:
    return Tool(name="edit", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
