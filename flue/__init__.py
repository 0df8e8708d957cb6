"""Flue for Python: the agent harness framework.

Where to find things (one hop):

- plugin API (every hook):         ``flue.hookspecs`` (``ObserverContext``, ``AppRuntime``); the types
  plugins implement are exported here: ``FlueConfig``, ``ModelProvider``, ``SandboxEnv``,
  ``ChannelKind``, ``PersistenceAdapter``, ``FlueEvent``, ...
- authoring formats (files):       ``flue.authoring`` (agents, skills, workflows, channels)
- project discovery + diagnostics: ``flue.project``, ``flue.diagnostics``, ``flue.config``
- events:                          ``flue.events`` (``flue.observe(fn)`` subscribes from code)
- errors (the root, wire types):   ``flue.errors``
- inspection (agents, runs):       ``flue.runtime.inspect`` (``list_agents``, ``list_runs``, ``get_run``)
- tools and the ``@tool`` decorator: ``flue.tools`` (``create_tools``, ``BUILTIN_TOOL_NAMES``;
  MCP servers as tools: ``flue.harness.mcp``, ``connect_mcp_server`` from code)
- agents in code:                  ``flue.agent`` (``create_agent``, ``define_agent_profile``, roles)
- call handles and abort:          ``flue.harness.abort`` (``CallHandle``, ``AbortSignal``)
- per-request provider settings:   ``flue.models.overrides`` (``configure_provider``)
- deleting a session:              ``flue.runtime.deletion`` (``delete_session``)
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
    from flue.agent import Agent, AgentContext, CreatedAgent, Role, create_agent, define_agent_profile
    from flue.authoring.channels import Channel, ChannelKind
    from flue.authoring.skills import SkillDefinition, load_skill
    from flue.config import FlueConfig, PersistenceConfig, ProviderConfig
    from flue.diagnostics import Diagnostic, ProjectError
    from flue.errors import FlueError
    from flue.events import IMAGE_DATA_OMITTED, FlueEvent, observe
    from flue.harness.abort import AbortSignal, CallHandle
    from flue.harness.errors import (
        FlueHarnessError,
        ModelNotConfiguredError,
        OperationCancelledError,
        ResultValidationError,
        SessionDeletedError,
        TurnLimitError,
        UnknownRoleError,
        UnknownSkillError,
        UnknownSubagentError,
    )
    from flue.harness.harness import Harness, init
    from flue.harness.mcp import McpServerConnection, connect_mcp_server
    from flue.harness.session import OperationResult, Session
    from flue.hookspecs import AppRuntime, ObserverContext
    from flue.models.base import ModelProvider, ModelRequest
    from flue.models.overrides import configure_provider
    from flue.persistence.base import PersistenceAdapter, PersistenceStores
    from flue.persistence.submissions import DispatchConflictError, DispatchReceipt
    from flue.project import Project, load_project
    from flue.runtime.context import FlueContext
    from flue.runtime.deletion import delete_session
    from flue.runtime.dispatch import dispatch
    from flue.runtime.inspect import get_run, list_agents, list_runs
    from flue.sandbox.base import SandboxEnv, SandboxFactory
    from flue.tools import BUILTIN_TOOL_NAMES, Tool, ToolContext, ToolError, create_tools, tool
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
    "create_tools": "flue.tools",
    "BUILTIN_TOOL_NAMES": "flue.tools",
    "init": "flue.harness.harness",
    "Harness": "flue.harness.harness",
    "Session": "flue.harness.session",
    "OperationResult": "flue.harness.session",
    "Agent": "flue.agent",
    "create_agent": "flue.agent",
    "define_agent_profile": "flue.agent",
    "AgentContext": "flue.agent",
    "CreatedAgent": "flue.agent",
    "Role": "flue.agent",
    "SkillDefinition": "flue.authoring.skills",
    "load_skill": "flue.authoring.skills",
    "AbortSignal": "flue.harness.abort",
    "CallHandle": "flue.harness.abort",
    "connect_mcp_server": "flue.harness.mcp",
    "McpServerConnection": "flue.harness.mcp",
    "configure_provider": "flue.models.overrides",
    "delete_session": "flue.runtime.deletion",
    "SessionDeletedError": "flue.harness.errors",
    "UnknownRoleError": "flue.harness.errors",
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
    # the types a plugin author implements or receives (see flue.hookspecs)
    "FlueConfig": "flue.config",
    "ProviderConfig": "flue.config",
    "PersistenceConfig": "flue.config",
    "ModelProvider": "flue.models.base",
    "ModelRequest": "flue.models.base",
    "SandboxEnv": "flue.sandbox.base",
    "SandboxFactory": "flue.sandbox.base",
    "ChannelKind": "flue.authoring.channels",
    "Channel": "flue.authoring.channels",
    "PersistenceAdapter": "flue.persistence.base",
    "PersistenceStores": "flue.persistence.base",
    "ObserverContext": "flue.hookspecs",
    "AppRuntime": "flue.hookspecs",
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
