"""Forwarding events to ``flue_observe`` plugins.

Each observer implementation is called on its own (not through one pluggy
call) so that a failing observer cannot keep the others from seeing the
event; a coroutine returned by an ``async def`` observer is awaited. Failures
are reported once per observer on stderr and otherwise ignored, as the hook's
contract says.
"""

from __future__ import annotations

import inspect
import sys
from typing import TYPE_CHECKING, Any

from flue.events import BaseEvent

if TYPE_CHECKING:
    from flue.project import Project

_ID_FIELDS = ("run_id", "instance_id", "agent", "submission_id", "dispatch_id", "harness", "session", "operation_id", "turn_id")


def observer_subscriber(project: Project, *, scope: str | None = None):
    """A sink subscriber calling every ``flue_observe`` implementation of the project's plugins."""
    reported: set[int] = set()

    async def forward(event: BaseEvent) -> None:
        pm = project.pm
        if pm is None:
            return
        context: dict[str, Any] = {"project": project, "scope": scope}
        context.update({k: getattr(event, k) for k in _ID_FIELDS if getattr(event, k, None) is not None})
        for impl in pm.hook.flue_observe.get_hookimpls():
            kwargs = {k: v for k, v in {"event": event, "context": context}.items() if k in impl.argnames}
            try:
                out = impl.function(**kwargs)
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                if id(impl) not in reported:
                    reported.add(id(impl))
                    name = pm.get_name(impl.plugin) or "?"
                    print(f"flue: observer plugin '{name}' failed and is ignored: {exc!r}", file=sys.stderr)

    return forward
