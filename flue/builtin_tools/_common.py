"""Shared plumbing for the built-in tools: paths, sandbox errors, truncation, read tracking."""

from __future__ import annotations

from typing import Any

from flue.sandbox.base import FileStat, SandboxEnv
from flue.sandbox.paths import resolve
from flue.tools import ToolContext, ToolError

# ToolContext.state key: {absolute path: (mtime, size)} as of the last read or write
# by this session. write/edit refuse to touch an existing file that is not in it, or
# that changed since (a command, another session, or the host wrote it).
READ_STATE_KEY = "flue.files_read"
BINARY_SNIFF_BYTES = 8192


def env_of(ctx: ToolContext) -> SandboxEnv:
    if ctx.env is None:
        raise ToolError("this agent has no sandbox, so file and shell tools are unavailable")
    return ctx.env


def abs_path(ctx: ToolContext, path: str) -> str:
    """Resolve a model-supplied path against the agent's cwd."""
    if not isinstance(path, str) or not path.strip():
        raise ToolError("path must be a non-empty string")
    return resolve(ctx.cwd or "/", path.strip())


async def stat_or_none(env: SandboxEnv, path: str) -> FileStat | None:
    try:
        return await env.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ToolError(os_message(exc, path)) from None


def os_message(exc: BaseException, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"{path} does not exist"
    if isinstance(exc, IsADirectoryError):
        return f"{path} is a directory"
    if isinstance(exc, NotADirectoryError):
        return f"a parent of {path} is not a directory"
    if isinstance(exc, PermissionError):
        return f"permission denied: {path}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{path}: {exc.strerror}"
    return f"{path}: {exc}"


def is_binary(data: bytes) -> bool:
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def _fingerprint(st: FileStat) -> tuple[float, int]:
    return (st.mtime.timestamp(), st.size)


def mark_read(ctx: ToolContext, path: str, st: FileStat) -> None:
    ctx.state.setdefault(READ_STATE_KEY, {})[path] = _fingerprint(st)


def check_may_change(ctx: ToolContext, path: str, st: FileStat, verb: str) -> None:
    """Enforce read-before-write: the session must have seen the file as it is now."""
    seen: dict[str, Any] = ctx.state.get(READ_STATE_KEY, {})
    if path not in seen:
        raise ToolError(
            f"{path} already exists and has not been read in this session. "
            f"Read it with the read tool first, then {verb} it."
        )
    if tuple(seen[path]) != _fingerprint(st):
        raise ToolError(
            f"{path} has changed since this session last read it (a command, another session or "
            f"someone else wrote it). Read it again before you {verb} it."
        )


def keep_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    # Start at a line boundary when one is near, so the first line shown is whole.
    nl = text.find("\n", cut, cut + 1000)
    if nl != -1:
        cut = nl + 1
    return f"[... {cut} earlier characters truncated ...]\n" + text[cut:]


def keep_head(text: str, limit: int) -> str:
    """The first ``limit`` characters, with a marker saying how much was cut."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[... {len(text) - limit} more characters truncated ...]"


def cut_line(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    return line[:limit] + f"… [line truncated, {len(line)} characters]"


def split_lines(text: str) -> list[str]:
    """Lines without their terminators ('\\n' or '\\r\\n'); no phantom line after a final newline."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def number(lines: list[str], start: int) -> str:
    """``cat -n`` style: right-aligned 1-based line numbers and a tab."""
    return "\n".join(f"{i:>6}\t{line}" for i, line in enumerate(lines, start))
