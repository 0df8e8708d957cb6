"""``grep``: search file contents with a regular expression.

Limits: at most :data:`GREP_DEFAULT_LIMIT` results per call unless ``limit``
asks for more (up to :data:`GREP_MAX_LIMIT`); matching lines are cut at
:data:`GREP_MAX_LINE_CHARS` characters; binary files and files over
:data:`GREP_MAX_FILE_BYTES` are skipped; a search visits at most
:data:`~flue.sandbox.walk.MAX_WALK_FILES` files. Every cut is reported in the
result. Directories such as ``.git`` and ``node_modules`` are not searched.

Matching uses Python's ``re`` in a worker thread, so a slow pattern never stalls
the event loop. Files are listed with :func:`flue.sandbox.walk.walk_files` and
read through the sandbox, so the tool works with any ``SandboxEnv``.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from flue.builtin_tools._common import (
    abs_path,
    cut_line,
    env_of,
    is_binary,
    os_message,
    split_lines,
    stat_or_none,
)
from flue.builtin_tools.globmatch import compile_glob
from flue.sandbox.paths import relative_to
from flue.sandbox.walk import MAX_WALK_FILES, walk_files
from flue.tools import Tool, ToolContext, ToolError

GREP_DEFAULT_LIMIT = 100
GREP_MAX_LIMIT = 1000
GREP_MAX_LINE_CHARS = 500
GREP_MAX_FILE_BYTES = 5 * 1024 * 1024
GREP_MAX_CONTEXT = 10
READ_BATCH = 32  # files read concurrently

DESCRIPTION = f"""Search file contents with a regular expression (Python `re` syntax) and return matching lines as `path:line:text`.

- `path` is a file or directory (default: the working directory); subdirectories are searched; .git, node_modules and similar are skipped.
- `glob` filters files, e.g. `*.md` (matches file names) or `docs/**/*.md` (matches paths under `path`).
- `ignore_case`, `literal` (treat the pattern as plain text) and `context` (lines before and after, shown as `path-line-text`) refine the search.
- `output_mode`: `content` (default, matching lines), `files_with_matches` (paths only) or `count` (matches per file).
- Returns at most {GREP_DEFAULT_LIMIT} results (raise with `limit`, max {GREP_MAX_LIMIT}); long lines are cut at {GREP_MAX_LINE_CHARS} characters; binary files and files over {GREP_MAX_FILE_BYTES // (1024 * 1024)} MB are skipped."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "pattern": {"type": "string", "minLength": 1, "description": "Regular expression to search for"},
        "path": {"type": "string", "description": "File or directory to search (default: working directory)"},
        "glob": {"type": "string", "description": "Only search files matching this glob, e.g. `*.py`"},
        "ignore_case": {"type": "boolean", "description": "Case-insensitive search"},
        "literal": {"type": "boolean", "description": "Treat pattern as a literal string, not a regex"},
        "context": {"type": "integer", "minimum": 0, "maximum": GREP_MAX_CONTEXT, "description": "Lines of context around each match"},
        "output_mode": {"type": "string", "enum": ["content", "files_with_matches", "count"]},
        "limit": {"type": "integer", "minimum": 1, "maximum": GREP_MAX_LIMIT, "description": f"Maximum results (default {GREP_DEFAULT_LIMIT})"},
    },
    "required": ["pattern"],
    "additionalProperties": False,
}


@dataclass
class _Search:
    regex: re.Pattern[str]
    mode: str
    context: int
    limit: int
    results: int = 0
    out: list[str] = field(default_factory=list)

    @property
    def full(self) -> bool:
        return self.results >= self.limit

    def scan(self, path: str, text: str) -> None:
        """Add one file's results. Runs in a worker thread."""
        lines = split_lines(text)
        hits = [i for i, line in enumerate(lines) if self.regex.search(line)]
        if not hits:
            return
        if self.mode == "files_with_matches":
            self.out.append(path)
            self.results += 1
            return
        if self.mode == "count":
            self.out.append(f"{path}:{len(hits)}")
            self.results += 1
            return
        hits = hits[: self.limit - self.results]
        self.results += len(hits)
        hit_set = set(hits)
        last_shown = -2
        for i in hits:
            lo, hi = max(0, i - self.context), min(len(lines) - 1, i + self.context)
            lo = max(lo, last_shown + 1)
            if self.context and self.out and lo > last_shown + 1:
                self.out.append("--")
            for j in range(lo, hi + 1):
                sep = ":" if j in hit_set else "-"
                self.out.append(f"{path}{sep}{j + 1}{sep}{cut_line(lines[j], GREP_MAX_LINE_CHARS)}")
            last_shown = hi


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    root = abs_path(ctx, args.get("path") or ".")
    pattern: str = args["pattern"]
    flags = re.IGNORECASE if args.get("ignore_case") else 0
    try:
        regex = re.compile(re.escape(pattern) if args.get("literal") else pattern, flags)
    except re.error as exc:
        raise ToolError(f"invalid regular expression {pattern!r}: {exc}. Set literal to true to search for plain text.") from None
    file_filter = _file_filter(args.get("glob"))
    st = await stat_or_none(env, root)
    if st is None:
        raise ToolError(f"{root} does not exist")
    try:
        files, walk_cut = await walk_files(env, root)
    except OSError as exc:
        raise ToolError(os_message(exc, root)) from None
    if st.is_directory and file_filter is not None:
        files = [f for f in files if file_filter(relative_to(f, root) or posixpath.basename(f))]

    search = _Search(
        regex=regex,
        mode=args.get("output_mode") or "content",
        context=int(args.get("context") or 0),
        limit=int(args.get("limit") or GREP_DEFAULT_LIMIT),
    )
    skipped_big = 0
    for start in range(0, len(files), READ_BATCH):
        if search.full:
            break
        batch = files[start : start + READ_BATCH]
        contents = await asyncio.gather(*(_read(env, f) for f in batch))
        texts: list[tuple[str, str]] = []
        for f, data in zip(batch, contents, strict=True):
            if data is _TOO_BIG:
                skipped_big += 1
            elif isinstance(data, bytes) and not is_binary(data):
                texts.append((f, data.decode("utf-8", errors="replace")))
        await asyncio.to_thread(_scan_all, search, texts)

    notes = []
    if search.full:
        notes.append(f"[Stopped at {search.limit} results; narrow the pattern, path or glob, or raise limit (max {GREP_MAX_LIMIT}).]")
    if walk_cut:
        notes.append(f"[Only the first {MAX_WALK_FILES:,} files under {root} were searched; narrow the path.]")
    if skipped_big:
        notes.append(f"[Skipped {skipped_big} file(s) over {GREP_MAX_FILE_BYTES // (1024 * 1024)} MB.]")
    if not search.out:
        where = f"{root} (files matching {args['glob']!r})" if args.get("glob") else root
        return "\n".join([f"No matches for {pattern!r} in {where}.", *notes])
    return "\n".join(search.out + notes)


def _scan_all(search: _Search, texts: list[tuple[str, str]]) -> None:
    for path, text in texts:
        if search.full:
            return
        search.scan(path, text)


def _file_filter(glob: str | None):
    if not glob:
        return None
    try:
        rx = compile_glob(glob)
    except (ValueError, re.error) as exc:
        raise ToolError(f"invalid glob {glob!r}: {exc}") from None
    if "/" in glob:
        return lambda rel: bool(rx.match(rel))
    # A glob without '/' filters by file name at any depth (like rg --glob).
    return lambda rel: bool(rx.match(posixpath.basename(rel)))


_TOO_BIG = object()


async def _read(env: Any, path: str) -> bytes | object | None:
    try:
        st = await env.stat(path)
        if st.size > GREP_MAX_FILE_BYTES:
            return _TOO_BIG  # skipped without reading it
        return await env.read_file_bytes(path)
    except OSError:
        return None  # vanished or unreadable since the listing


def make() -> Tool:
    return Tool(name="grep", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
