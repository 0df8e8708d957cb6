"""Which tools a model may call in an operation, by name.

Sources, in order:

1. the agent's ``tools:``: names of built-in tools (``flue.builtin_tools``)
   or of plugin tools (``flue_tools`` hook), and, for Python agents,
   :class:`~flue.tools.Tool` objects; ``tools`` omitted means the default
   built-in tools (``flue.builtin_tools.DEFAULT_TOOLS``);
2. tools passed to ``init(..., tools=[...])`` (harness-wide);
3. tools passed to the call (``prompt(..., tools=[...])``).

A custom tool (plugin, Python or call-site) whose name is a built-in tool name
is rejected, as is a name used twice, or the reserved result tool name.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from flue.builtin_tools import DEFAULT_TOOLS
from flue.builtin_tools.task import make as make_task
from flue.harness.errors import ToolNameCollisionError, UnknownToolError
from flue.harness.results import RESULT_TOOL_NAME
from flue.plugins import BUILTIN_PLUGINS
from flue.tools import BUILTIN_TOOL_NAMES, Tool

if TYPE_CHECKING:
    from flue.registries import Registry


def builtin_tools(
    registry: Registry[Tool], subagents: dict[str, str | None] | None = None
) -> tuple[dict[str, Tool], list[str]]:
    """The built-in tools (as ``flue.builtin_tools.plugin`` registered them) and the default names
    (``plugins: {flue.builtin_tools.plugin: false}`` in flue.yaml leaves an agent none).

    ``subagents`` ({name: description}) makes a ``task`` tool that lists the agent's subagents.
    """
    tools = {
        name: tool for name, (plugin, tool) in registry.entries.items()
        if name in BUILTIN_TOOL_NAMES and plugin in BUILTIN_PLUGINS
    }
    if subagents and "task" in tools:
        tools["task"] = _task_for(tuple(sorted(subagents.items())))
    return tools, [name for name in DEFAULT_TOOLS if name in tools]  # none if the plugin is disabled


@functools.lru_cache(maxsize=256)
def _task_for(subagents: tuple[tuple[str, str | None], ...]) -> Tool:
    """One ``task`` tool per subagent list: tools hold no state, and making one (with its schema
    validator) for every prompt showed in profiles."""
    return make_task(dict(subagents))


def plugin_tools(registry: Registry[Tool]) -> dict[str, Tool]:
    """Tools registered by plugins; names that shadow built-ins are left out (reported by ``flue info``)."""
    return {name: tool for name, tool in registry.values().items() if name not in BUILTIN_TOOL_NAMES}


def check_custom(tool: Any, where: str) -> Tool:
    if not isinstance(tool, Tool):
        raise TypeError(f"{where}: expected a flue.Tool (use the @flue.tool decorator), got {type(tool).__name__}")
    if tool.name in BUILTIN_TOOL_NAMES:
        raise ToolNameCollisionError(tool.name, f"({where}) is the name of a built-in tool")
    if tool.name == RESULT_TOOL_NAME:
        raise ToolNameCollisionError(tool.name, f"({where}) is reserved for structured results")
    return tool


def add_tools(into: dict[str, Tool], tools: list[Any] | None, where: str) -> dict[str, Tool]:
    for tool in tools or []:
        tool = check_custom(tool, where)
        if tool.name in into:
            raise ToolNameCollisionError(tool.name, f"({where}) is already used by another tool of this agent")
        into[tool.name] = tool
    return into


def agent_tools(
    agent_name: str,
    spec: list[Any] | None,
    *,
    builtins: dict[str, Tool],
    defaults: list[str],
    plugins: dict[str, Tool],
) -> dict[str, Tool]:
    """Resolve an agent's ``tools`` list to Tool objects by name."""
    out: dict[str, Tool] = {}
    for entry in defaults if spec is None else spec:
        if isinstance(entry, str):
            if entry in builtins:
                out[entry] = builtins[entry]
                continue
            if entry not in plugins:
                raise UnknownToolError(entry, agent_name, [*builtins, *plugins])
            out[entry] = plugins[entry]
        else:
            add_tools(out, [entry], f"agent '{agent_name}'")
    return out
