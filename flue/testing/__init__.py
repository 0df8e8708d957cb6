"""Test support for Flue users and for Flue itself.

- scripted models (in process, and behind a real HTTP server speaking the Chat Completions,
  Responses and Anthropic Messages protocols)
- ``persistence_contract``: the test suite every persistence adapter should pass
"""

from flue.testing.model_server import RecordedRequest, ScriptedModelServer
from flue.testing.scripted import (
    ScriptedModel,
    ScriptedToolCall,
    ScriptedTurn,
    ScriptExhaustedError,
    calls,
    reply,
    tool_call,
)
from flue.testing.sequences import event_types

__all__ = [
    "RecordedRequest",
    "ScriptExhaustedError",
    "ScriptedModel",
    "ScriptedModelServer",
    "ScriptedToolCall",
    "ScriptedTurn",
    "calls",
    "event_types",
    "reply",
    "tool_call",
]
