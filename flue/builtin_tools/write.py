"""``write``: create a file or replace its whole content.

Read-before-write: an existing file must have been read (or written) by this
session, unchanged since, before it may be overwritten. Parent directories are
created as needed.
"""

from __future__ import annotations

from typing import Any

from flue.builtin_tools._common import abs_path, check_may_change, env_of, mark_read, os_message, stat_or_none
from flue.tools import Tool, ToolContext, ToolError

DESCRIPTION = """Write a file in the sandbox, creating it (and missing parent directories) or replacing all of its content.

- `path` is absolute or relative to the working directory.
- An existing file must be read with the read tool first; to change part of a file, prefer edit.
- Returns a one-line confirmation."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "File to write"},
        "content": {"type": "string", "description": "The complete new content of the file"},
    },
    "required": ["path", "content"],
    "additionalProperties": False,
}


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    path = abs_path(ctx, args["path"])
    content: str = args["content"]
    st = await stat_or_none(env, path)
    if st is not None:
        if st.is_directory:
            raise ToolError(f"{path} is a directory; choose a file path")
        check_may_change(ctx, path, st, "overwrite")
    try:
        await env.write_file(path, content)
        mark_read(ctx, path, await env.stat(path))
    except OSError as exc:
        raise ToolError(os_message(exc, path)) from None
    lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
    verb = "Overwrote" if st is not None else "Created"
    return f"{verb} {path} ({lines} lines, {len(content.encode('utf-8'))} bytes)."


def make() -> Tool:
    return Tool(name="write", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
