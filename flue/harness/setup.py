"""An agent's setup: what ``Harness.prepare`` composes once per agent and working directory.

A session reads its agent's system prompt, skills and tools from its :class:`AgentSetup`
instead of asking the harness for each at every call; the harness builds one per
``(agent, cwd)`` in ``prepare`` (the workspace's ``AGENTS.md`` and skills, packaged skills,
built-in, plugin and MCP tools) and never rebuilds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flue.harness.toolset import add_tools

if TYPE_CHECKING:
    from flue.harness.context import SkillEntry
    from flue.tools import Tool


@dataclass(frozen=True, slots=True)
class AgentSetup:
    """What an agent needs at a cwd: its system prompt, skills and tools."""

    system: str
    skills: dict[str, SkillEntry]
    tools: dict[str, Tool]

    def tools_with(self, call_tools: list[Any] | None) -> dict[str, Tool]:
        """The agent's tools plus a call's ``tools=`` (checked for name collisions)."""
        if not call_tools:
            return self.tools
        return add_tools(dict(self.tools), call_tools, "tools= of the call")
