"""The runtime most recently opened in this process: what ``dispatch`` and ``delete_session`` use
when no runtime is passed. Its own module so that the modules the runtime wires together reach it
without importing the runtime (no cycle)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

#: Opened runtimes, the newest last (``Runtime.open`` appends, ``close`` removes).
RUNNING: list[Runtime] = []


def current_runtime() -> Runtime:
    """The runtime of this process (for ``dispatch`` from plugins, channels and workflows)."""
    if not RUNNING:
        raise RuntimeError("no Flue runtime is running in this process (dispatch needs flue dev/start/run/connect)")
    return RUNNING[-1]
