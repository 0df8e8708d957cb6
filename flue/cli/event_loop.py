"""The event loop ``flue start`` runs on: uvloop where it is installed, else asyncio's own.

``--loop auto`` (the default) picks uvloop when it can be imported (it is a dependency of
flue on Linux and macOS), ``--loop uvloop`` insists on it, ``--loop asyncio`` uses the
standard library's loop. uvloop's transports, timers and callbacks are C; measured with
``benchmarks/one_side.py`` it saved up to 5% of the CPU of an agent prompt (often within the
machine's noise). Nothing else in Flue depends on which loop runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHOICES = ("auto", "uvloop", "asyncio")


class LoopUnavailable(RuntimeError):
    """``--loop uvloop`` where uvloop cannot be imported."""


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for ``choice`` (``None``: asyncio's default)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise LoopUnavailable("--loop uvloop: uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], factory: Callable[[], asyncio.AbstractEventLoop] | None) -> T:
    """``asyncio.run(main)`` on the loop ``factory`` makes (from :func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
