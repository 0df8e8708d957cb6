"""``read``: show a text file with line numbers.

Limits per call: at most :data:`READ_MAX_LINES` lines and :data:`READ_MAX_BYTES`
bytes of file text; lines longer than :data:`READ_MAX_LINE_CHARS` characters
are cut. ``offset``/``limit`` page through longer files and the output ends
with a marker saying where to continue. Reading records the file in the
session's read set, which ``write`` and ``edit`` require.
"""

from __future__ import annotations

from typing import Any

from flue.builtin_tools._common import (
    abs_path,
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

READ_MAX_LINES = 2000
READ_MAX_BYTES = 50_000
READ_MAX_LINE_CHARS = 2000

DESCRIPTION = f"""Read a text file from the sandbox. Returns its lines numbered like `cat -n` (number, tab, text).

- `path` is absolute or relative to the working directory.
- Shows at most {READ_MAX_LINES} lines / {READ_MAX_BYTES // 1000} KB per call; use `offset` (1-based first line) and `limit` (number of lines) to page through longer files. The output ends with a note when there is more.
- Lines longer than {READ_MAX_LINE_CHARS} characters are cut.
- You must read a file before you change an existing one with write or edit.
- To list a directory use glob (or bash `ls`)."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "File to read"},
        "offset": {"type": "integer", "minimum": 1, "description": "1-based line number to start at (default 1)"},
        "limit": {
            "type": "integer",
            "minimum": 1,
            "maximum": READ_MAX_LINES,
            "description": f"Maximum number of lines to show (default and max {READ_MAX_LINES})",
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    path = abs_path(ctx, args["path"])
    st = await stat_or_none(env, path)
    if st is None:
        raise ToolError(f"{path} does not exist. Use glob to find files.")
    if st.is_directory:
        raise ToolError(f"{path} is a directory, not a file. Use glob (or bash `ls`) to list it.")
    try:
        data = await env.read_file_bytes(path)
    except OSError as exc:
        raise ToolError(os_message(exc, path)) from None
    mark_read(ctx, path, st)
    if is_binary(data):
        return f"{path} is a binary file ({len(data)} bytes) and cannot be shown as text. Use bash (e.g. `xxd | head`) to inspect it."
    lines = split_lines(data.decode("utf-8", errors="replace"))
    if not lines:
        return f"[{path} is empty]"
    offset = int(args.get("offset") or 1)
    limit = int(args.get("limit") or READ_MAX_LINES)
    if offset > len(lines):
        raise ToolError(f"offset {offset} is past the end of {path}, which has {len(lines)} lines")
    shown: list[str] = []
    used = 0
    for line in lines[offset - 1 : offset - 1 + min(limit, READ_MAX_LINES)]:
        line = cut_line(line, READ_MAX_LINE_CHARS)
        size = len(line.encode("utf-8")) + 1
        if shown and used + size > READ_MAX_BYTES:
            break
        shown.append(line)
        used += size
    end = offset + len(shown) - 1
    text = number(shown, offset)
    if end < len(lines):
        text += f"\n[Showing lines {offset}-{end} of {len(lines)}. Use offset={end + 1} to read more.]"
    return text


def make() -> Tool:
    return Tool(name="read", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
