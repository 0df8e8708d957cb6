"""``FlueContext``: what a workflow's ``run(ctx)`` receives."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flue.events import EventSink, Log
from flue.stream_paths import run_stream_path

if TYPE_CHECKING:
    from flue.harness.harness import Harness
    from flue.runtime.runtime import Runtime


class HarnessAlreadyInitialized(RuntimeError):
    pass


class Logger:
    """``ctx.log``: structured ``log`` events in the run's stream.

    Both Flue's form and keywords work, and mix::

        ctx.log.info("greeted", {"name": name})
        ctx.log.warn("slow", seconds=3.2)
    """

    def __init__(self, sink: EventSink):
        self._sink = sink

    def _log(self, level: str, message: str, attributes: Mapping[str, Any] | None, more: dict[str, Any]) -> None:
        if attributes is not None and not isinstance(attributes, Mapping):
            raise TypeError(f"log attributes must be a mapping, not {type(attributes).__name__}")
        merged = {**(attributes or {}), **more}
        self._sink.emit_nowait(Log(level=level, message=str(message), attributes=_jsonable(merged) if merged else None))

    def info(self, message: str, attributes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self._log("info", message, attributes, more)

    def warn(self, message: str, attributes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self._log("warn", message, attributes, more)

    warning = warn

    def error(self, message: str, attributes: Mapping[str, Any] | None = None, /, **more: Any) -> None:
        self._log("error", message, attributes, more)


def _jsonable(value: Any) -> Any:
    import json

    from flue import strict_json

    plain = json.loads(json.dumps(value, default=str))
    strict_json.check(plain, max_depth=strict_json.MAX_STORED_DEPTH, what="the log attributes")
    return plain


@dataclass
class FlueContext:
    id: str
    payload: Any
    runtime: Runtime
    sink: EventSink
    req: Any = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _harnesses: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log = Logger(self.sink)

    @property
    def run_id(self) -> str:
        return self.id

    async def init(self, agent: Any, name: str = "default", **options: Any) -> Harness:
        """Initialize an agent (a name from ``agents/``, an AgentDefinition or an Agent)
        as a harness for this run. Each harness name may be initialized once per run."""
        from flue.harness import init as harness_init

        if name in self._harnesses:
            raise HarnessAlreadyInitialized(
                f"a harness named '{name}' was already initialized in this run; pass name='...' for another one"
            )
        options.setdefault("payload", self.payload)  # an agent initializer's ctx.payload
        harness = await harness_init(
            agent,
            name=name,
            project=self.runtime.project,
            sink=self.sink,
            session_store=self.runtime.stores.sessions,
            scope=run_stream_path(self.id),
            **options,
        )
        self._harnesses[name] = harness
        return harness
