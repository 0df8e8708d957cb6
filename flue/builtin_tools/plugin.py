"""Built-in plugin: the built-in tools, registered through the public ``flue_tools`` hook.

The harness takes them from the project's tool registry (:mod:`flue.registries`), as any
plugin's tools; what sets them apart is only their names (:data:`flue.tools.BUILTIN_TOOL_NAMES`),
which no other plugin may use, and that ``task`` is made again for each agent so that it
lists the agent's subagents (:func:`flue.harness.toolset.builtin_tools`).
"""

from __future__ import annotations

from flue.hookspecs import hookimpl
from flue.tools import Tool


@hookimpl
def flue_tools() -> list[Tool]:
    from flue.builtin_tools import builtin_tools

    return list(builtin_tools().values())
