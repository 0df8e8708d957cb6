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

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from flue.harness.errors import ToolNameCollisionError, UnknownToolError
from flue.harness.results import RESULT_TOOL_NAME
from flue.tools import BUILTIN_TOOL_NAMES, Tool

if TYPE_CHECKING:
    import pluggy


def builtin_tools(subagents: dict[str, str | None] | None = None) -> tuple[dict[str, Tool], list[str]]:
    """Built-in tools by name and the default names; empty if flue.builtin_tools is absent.

    ``subagents`` ({name: description}) lets the ``task`` tool list the agent's subagents.
    """
    try:
        module = importlib.import_module("flue.builtin_tools")
    except ModuleNotFoundError as exc:
        if exc.name != "flue.builtin_tools":
            raise
        return {}, []
    make = module.builtin_tools
    # Built once per subagent list: the tools hold no state, and making them (and their schema
    # validators) for every prompt showed in profiles.
    key = (make, tuple(sorted((subagents or {}).items())))
    made = _BUILTINS.get(key)
    if made is None:
        accepts = "subagents" in inspect.signature(make).parameters
        tools = dict(make(subagents=subagents or None) if accepts else make())
        if len(_BUILTINS) >= 256:
            _BUILTINS.clear()
        made = _BUILTINS[key] = (tools, list(getattr(module, "DEFAULT_TOOLS", tools)))
    return dict(made[0]), list(made[1])


_BUILTINS: dict[tuple[Any, tuple[tuple[str, str | None], ...]], tuple[dict[str, Tool], list[str]]] = {}


def plugin_tools(pm: pluggy.PluginManager | None) -> dict[str, Tool]:
    """Tools registered by plugins; names that shadow built-ins are left out (reported by ``flue info``)."""
    if pm is None:
        return {}
    from flue.plugins import collect_named

    named, _diags = collect_named(pm, "flue_tools", "tool")
    return {name: tool for name, (_plugin, tool) in named.items() if name not in BUILTIN_TOOL_NAMES}


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
            if entry in BUILTIN_TOOL_NAMES:
                # A built-in not installed yet is skipped rather than fatal, so agents
                # written for the full framework still run where a subset is present.
                if entry in builtins:
                    out[entry] = builtins[entry]
                continue
            if entry not in plugins:
                raise UnknownToolError(entry, agent_name, [*builtins, *plugins])
            out[entry] = plugins[entry]
        else:
            add_tools(out, [entry], f"agent '{agent_name}'")
    return out
