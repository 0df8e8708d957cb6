"""``glob``: find files by name pattern.

Limit: at most :data:`GLOB_MAX_RESULTS` paths per call (the result says how
many more matched); at most :data:`~flue.sandbox.walk.MAX_WALK_FILES` files are
visited. Paths are absolute and sorted. Directories such as ``.git`` and
``node_modules`` are not searched.
"""

from __future__ import annotations

import re
from typing import Any

from flue.builtin_tools._common import abs_path, env_of, os_message, stat_or_none
from flue.builtin_tools.globmatch import compile_glob, split_root
from flue.sandbox.paths import relative_to, resolve
from flue.sandbox.walk import MAX_WALK_FILES, walk_files
from flue.tools import Tool, ToolContext, ToolError

GLOB_MAX_RESULTS = 100

DESCRIPTION = f"""Find files whose paths match a glob pattern; returns absolute paths, sorted.

- `*` and `?` match within one directory level, `**` matches any number of directories, `{{a,b}}` alternatives, `[abc]` character classes. Examples: `**/*.md` (every Markdown file below `path`), `*.txt` (only directly in `path`), `src/**/test_*.py`.
- `path` is the directory to search (default: the working directory); an absolute pattern such as `/workspace/**/*.md` needs no `path`.
- Returns at most {GLOB_MAX_RESULTS} paths; .git, node_modules and similar directories are skipped."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "minLength": 1, "description": "Glob pattern, e.g. `**/*.py`"},
        "path": {"type": "string", "description": "Directory to search (default: working directory)"},
    },
    "required": ["pattern"],
    "additionalProperties": False,
}


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    pattern: str = args["pattern"].strip()
    if pattern.startswith("/"):
        root, rel_pattern = split_root(resolve("/", pattern))
    else:
        root, rel_pattern = abs_path(ctx, args.get("path") or "."), pattern
    try:
        rx = compile_glob(rel_pattern)
    except (ValueError, re.error) as exc:
        raise ToolError(f"invalid glob {pattern!r}: {exc}") from None
    st = await stat_or_none(env, root)
    if st is None:
        return f"No files match {pattern!r}: {root} does not exist."
    if not st.is_directory:
        raise ToolError(f"{root} is a file, not a directory to search")
    try:
        files, walk_cut = await walk_files(env, root)
    except OSError as exc:
        raise ToolError(os_message(exc, root)) from None
    matches = [f for f in files if rx.match(relative_to(f, root) or "")]
    notes = []
    if walk_cut:
        notes.append(f"[Only the first {MAX_WALK_FILES:,} files under {root} were searched; narrow the path.]")
    if not matches:
        return "\n".join([f"No files match {pattern!r} under {root}.", *notes])
    if len(matches) > GLOB_MAX_RESULTS:
        notes.insert(0, f"[Showing {GLOB_MAX_RESULTS} of {len(matches)} matching paths; narrow the pattern or path.]")
    return "\n".join(matches[:GLOB_MAX_RESULTS] + notes)


def make() -> Tool:
    return Tool(name="glob", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
