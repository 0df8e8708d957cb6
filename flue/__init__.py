"""Flue for Python: the agent harness framework.

Where to find things (one hop):

- plugin API (every hook):         ``flue.hookspecs``
- authoring formats (files):       ``flue.authoring`` (agents, skills, workflows, channels)
- project discovery + diagnostics: ``flue.project``, ``flue.diagnostics``, ``flue.config``
- events:                          ``flue.events`` (``flue.observe(fn)`` subscribes from code)
- errors (the root, wire types):   ``flue.errors``
- inspection (agents, runs):       ``flue.runtime.inspect`` (``list_agents``, ``list_runs``, ``get_run``)
- tools and the ``@tool`` decorator: ``flue.tools`` (MCP servers as tools: ``flue.harness.mcp``)
- sandbox contract:                ``flue.sandbox.base``
- persistence contract:            ``flue.persistence.base``
- the CLI:                         ``flue.cli``

Public names are imported lazily so ``import flue`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flue.hookspecs import hookimpl
from flue.version import __version__

if TYPE_CHECKING:
    from flue.agent import Agent, create_agent
    from flue.diagnostics import Diagnostic, ProjectError
    from flue.errors import FlueError
    from flue.events import IMAGE_DATA_OMITTED, FlueEvent, observe
    from flue.harness.errors import (
        FlueHarnessError,
        ModelNotConfiguredError,
        OperationCancelledError,
        ResultValidationError,
        TurnLimitError,
        UnknownSkillError,
        UnknownSubagentError,
    )
    from flue.harness.harness import Harness, init
    from flue.harness.session import OperationResult, Session
    from flue.persistence.submissions import DispatchConflictError, DispatchReceipt
    from flue.project import Project, load_project
    from flue.runtime.context import FlueContext
    from flue.runtime.dispatch import dispatch
    from flue.runtime.inspect import get_run, list_agents, list_runs
    from flue.tools import Tool, ToolContext, ToolError, tool
    from flue.usage import Usage

_LAZY: dict[str, str] = {
    "Diagnostic": "flue.diagnostics",
    "ProjectError": "flue.diagnostics",
    "Project": "flue.project",
    "load_project": "flue.project",
    "Tool": "flue.tools",
    "ToolContext": "flue.tools",
    "ToolError": "flue.tools",
    "tool": "flue.tools",
    "init": "flue.harness.harness",
    "Harness": "flue.harness.harness",
    "Session": "flue.harness.session",
    "OperationResult": "flue.harness.session",
    "Agent": "flue.agent",
    "create_agent": "flue.agent",
    "FlueHarnessError": "flue.harness.errors",
    "ModelNotConfiguredError": "flue.harness.errors",
    "TurnLimitError": "flue.harness.errors",
    "ResultValidationError": "flue.harness.errors",
    "OperationCancelledError": "flue.harness.errors",
    "UnknownSkillError": "flue.harness.errors",
    "UnknownSubagentError": "flue.harness.errors",
    "dispatch": "flue.runtime.dispatch",
    "DispatchReceipt": "flue.persistence.submissions",
    "DispatchConflictError": "flue.persistence.submissions",
    "FlueContext": "flue.runtime.context",
    "FlueError": "flue.errors",
    "FlueEvent": "flue.events",
    "IMAGE_DATA_OMITTED": "flue.events",
    "observe": "flue.events",
    "list_agents": "flue.runtime.inspect",
    "list_runs": "flue.runtime.inspect",
    "get_run": "flue.runtime.inspect",
    "Usage": "flue.usage",
}

__all__ = ["__version__", "hookimpl", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flue' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
