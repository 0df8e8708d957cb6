"""The agent harness: ``init(agent)`` -> Harness -> Session -> operations -> turns.

Where things are (one hop):

- ``harness``: :func:`init`, :class:`Harness`, ``harness.sessions``
- ``session``: :class:`Session` (prompt / skill / task / shell / fs), :class:`OperationResult`
- ``loop``: the tool loop (streaming, parallel tools, argument validation, turn limit)
- ``results``: structured results through the ``final_result`` tool
- ``context``: the system prompt (instructions, AGENTS.md, skills)
- ``toolset``: resolving tool names; ``sandbox``: creating the env; ``fs``: the fs wrapper
- ``errors``: every typed error; ``store``: the in-memory session store

Names are imported lazily so that ``flue.harness.errors`` stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flue.harness.harness import Harness, Sessions, init
    from flue.harness.session import ImageInput, OperationResult, Session
    from flue.harness.store import MemorySessionStore

_LAZY = {
    "init": "flue.harness.harness",
    "Harness": "flue.harness.harness",
    "Sessions": "flue.harness.harness",
    "Session": "flue.harness.session",
    "OperationResult": "flue.harness.session",
    "ImageInput": "flue.harness.session",
    "MemorySessionStore": "flue.harness.store",
}

__all__ = ["Harness", "ImageInput", "MemorySessionStore", "OperationResult", "Session", "Sessions", "init"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flue.harness' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
