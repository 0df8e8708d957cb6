"""The built-in tools, with the names and behaviour of Flue's.

=========  ===================================================================
``bash``   run a command; last 30,000 characters of output; timeout (default
           the sandbox's, 120 s; max 600 s) ends in exit code 124
``read``   numbered lines; 2000 lines / 50 KB per call, ``offset``/``limit``;
           lines cut at 2000 characters
``write``  create or replace a file (read-before-write)
``edit``   exact ``old_string`` -> ``new_string``, unique unless ``replace_all``
           (read-before-write)
``grep``   regex over file contents; 100 results (``limit`` up to 1000); lines
           cut at 500 characters; files over 5 MB skipped
``glob``   paths matching a glob; 100 paths
``task``   delegate to a subagent via ``Session.task``; answer cut at 30,000
           characters
=========  ===================================================================

Every limit is stated in the tool's description, so the model knows it, and
every cut leaves a marker in the result. Paths are resolved against
``ToolContext.cwd``. **Read-before-write:** ``write`` and ``edit`` refuse to
change an existing file unless this session has read (or written) it and it has
not changed since; the record lives in ``ToolContext.state`` (per session), so
every session and task keeps its own.

The tools use only the public :class:`~flue.sandbox.base.SandboxEnv` methods
(plus the optional ``walk_files`` fast path), so they work on any sandbox.
"""

from __future__ import annotations

from collections.abc import Mapping

from flue.builtin_tools import bash, edit, glob, grep, read, task, write
from flue.builtin_tools.bash import BASH_MAX_CHARS, BASH_MAX_TIMEOUT
from flue.builtin_tools.glob import GLOB_MAX_RESULTS
from flue.builtin_tools.grep import (
    GREP_DEFAULT_LIMIT,
    GREP_MAX_FILE_BYTES,
    GREP_MAX_LIMIT,
    GREP_MAX_LINE_CHARS,
)
from flue.builtin_tools.read import READ_MAX_BYTES, READ_MAX_LINE_CHARS, READ_MAX_LINES
from flue.builtin_tools.task import TASK_MAX_CHARS
from flue.tools import BUILTIN_TOOL_NAMES, Tool

# What an agent gets when its file has no `tools:` key: every built-in.
DEFAULT_TOOLS: tuple[str, ...] = BUILTIN_TOOL_NAMES


def builtin_tools(subagents: Mapping[str, str | None] | None = None) -> dict[str, Tool]:
    """Fresh built-in tools by name.

    ``subagents`` ({name: description}) lists the agent's subagents in the
    ``task`` tool's description and restricts its ``agent`` argument to them.
    """
    tools = [
        bash.make(),
        read.make(),
        write.make(),
        edit.make(),
        grep.make(),
        glob.make(),
        task.make(subagents),
    ]
    out = {t.name: t for t in tools}
    assert tuple(out) == BUILTIN_TOOL_NAMES, "built-in tools and flue.tools.BUILTIN_TOOL_NAMES disagree"
    return out


__all__ = [
    "BASH_MAX_CHARS",
    "BASH_MAX_TIMEOUT",
    "DEFAULT_TOOLS",
    "GLOB_MAX_RESULTS",
    "GREP_DEFAULT_LIMIT",
    "GREP_MAX_FILE_BYTES",
    "GREP_MAX_LIMIT",
    "GREP_MAX_LINE_CHARS",
    "READ_MAX_BYTES",
    "READ_MAX_LINES",
    "READ_MAX_LINE_CHARS",
    "TASK_MAX_CHARS",
    "builtin_tools",
]
