"""Forwarding events to ``flue_observe`` plugins: the one dispatcher both paths use.

The runtime (every event of a server or ``flue run``) and a harness made by
``flue.init()`` outside a runtime subscribe :func:`observer_subscriber` to
their root sink. Each observer implementation is called on its own (not
through one pluggy call) so that a failing observer cannot keep the others
from seeing the event; a coroutine returned by an ``async def`` observer is
awaited. Failures are reported once per observer on stderr and otherwise
ignored, as the hook's contract says. Every observer gets the same context on
both paths: ``project``, ``scope`` (the harness's, or on the runtime path the
event's run or agent instance) and the event's correlation ids
(:func:`flue.events.event_context`). Observers get events without the process's
known secrets (:func:`flue.redaction.observed`).

An implementation may decline event types with a ``skip_types`` attribute on
its function (any container of type names, read at every event, so a plugin
can change its mind in ``flue_configure``): it is not called for those, and
an event that every observer declines is not even built (``turn_request``)
nor copied for them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from flue.events import FlueEvent, event_context, report_failure
from flue.redaction import observed
from flue.stream_paths import instance_path, run_stream_path

if TYPE_CHECKING:
    from flue.project import Project


def scope_of(event: FlueEvent) -> str | None:
    """The durable scope an event belongs to (``runs/<runId>``, ``agents/<name>/<id>``), as the
    harness path names it, so both paths hand observers the same context."""
    if event.run_id:
        return run_stream_path(event.run_id)
    if event.agent_name and event.instance_id:
        return instance_path(event.agent_name, event.instance_id)
    return None


class _Every:
    """A ``skip_types`` that declines every type (no observer plugin is installed)."""

    def __contains__(self, item: object) -> bool:
        return True


class _AllOf:
    """A ``skip_types`` that declines a type when every observer declines it."""

    def __init__(self, skips: list[Any]):
        self._skips = skips

    def __contains__(self, item: object) -> bool:
        return all(item in skip for skip in self._skips)


_NONE: frozenset[str] = frozenset()
_EVERY = _Every()


def _wants(impl: Any, event_type: str) -> bool:
    return event_type not in getattr(impl.function, "skip_types", _NONE)


class observer_subscriber:  # noqa: N801 - used like a function
    """A sink subscriber calling every ``flue_observe`` implementation of the project's plugins.

    ``project`` may also be any object with a ``project`` attribute (the runtime),
    read at each event so that a reloaded project's observers take over."""

    def __init__(self, project: Project | Any, *, scope: str | None = None):
        self._source = project
        self._scope = scope

    def _impls(self) -> tuple[Any, list[Any]]:
        current = getattr(self._source, "project", self._source)
        pm = current.pm
        return current, (pm.hook.flue_observe.get_hookimpls() if pm is not None else [])

    @property
    def skip_types(self) -> Any:
        """What every installed observer declines (everything when there is none), so costly
        events are not built for nobody."""
        impls = self._impls()[1]
        if not impls:
            return _EVERY
        skips = [getattr(impl.function, "skip_types", None) for impl in impls]
        return _NONE if any(skip is None for skip in skips) else _AllOf(skips)

    def __call__(self, event: FlueEvent) -> Awaitable[None] | None:
        current, impls = self._impls()
        impls = [impl for impl in impls if _wants(impl, event.type)]
        if not impls:
            return None  # no coroutine to make and await for nobody (most events of most projects)
        return self._deliver(current, impls, event)

    async def _deliver(self, current: Any, impls: list[Any], event: FlueEvent) -> None:
        event = observed(event)  # a copy without the known secrets, if it had any
        context = event_context(event, project=current, scope=self._scope or scope_of(event))
        for impl in impls:
            kwargs = {k: v for k, v in {"event": event, "context": context}.items() if k in impl.argnames}
            try:
                out = impl.function(**kwargs)
                if inspect.isawaitable(out):
                    await out
            except Exception as exc:
                report_failure(f"observer plugin '{current.pm.get_name(impl.plugin) or '?'}'", exc)
