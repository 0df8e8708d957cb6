"""``Runtime``: a loaded project bound to its persistence stores and observers."""

from __future__ import annotations

import inspect
from typing import Any

from flue.events import BaseEvent, EventSink
from flue.project import Project


def error_info(exc: BaseException) -> dict[str, Any]:
    """The JSON shape of an error in events and run records (never a traceback)."""
    return {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}


class Runtime:
    """Everything needed to run work for one project.

    Open with ``await Runtime.open(project)``; close with ``await runtime.close()``.
    ``sink`` is the root of all events: plugins' ``flue_observe`` hooks see
    every event emitted below it.
    """

    def __init__(self, project: Project, adapter: Any, stores: Any, *, dev: bool = False):
        self.project = project
        self.adapter = adapter
        self.stores = stores
        self.dev = dev
        self.sink = EventSink()
        if project.pm is not None and project.pm.hook.flue_observe.get_hookimpls():
            self.sink.subscribe(self._observe)
        self._workflow_modules: dict[str, tuple[float, Any]] = {}

    @classmethod
    async def open(cls, project: Project, *, dev: bool = False) -> Runtime:
        from flue.persistence.plugin import open_persistence

        project.raise_on_errors()
        adapter, stores = await open_persistence(project)
        return cls(project, adapter, stores, dev=dev)

    async def close(self) -> None:
        close = getattr(self.adapter, "close", None)
        if close is not None:
            out = close()
            if inspect.isawaitable(out):
                await out

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _observe(self, event: BaseEvent) -> None:
        assert self.project.pm is not None
        context = {"project": self.project, **{k: v for k, v in event.model_dump().items() if k.endswith("_id")}}
        for out in self.project.pm.hook.flue_observe(event=event, context=context):
            if inspect.isawaitable(out):
                await out
