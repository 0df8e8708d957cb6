"""``Runtime``: a loaded project bound to its persistence stores and observers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
from typing import Any

from flue import redaction
from flue.events import EventSink
from flue.harness.observers import observer_subscriber
from flue.ids import new_id
from flue.project import Project
from flue.runtime.current import RUNNING as _CURRENT
from flue.runtime.current import current_runtime


class Runtime:
    """Everything needed to run work for one project.

    Open with ``await Runtime.open(project)``; close with ``await runtime.close()``.
    ``sink`` is the root of all events: plugins' ``flue_observe`` hooks see
    every event emitted below it.
    """

    def __init__(self, project: Project, adapter: Any, stores: Any, *, dev: bool = False):
        self.project = project
        redaction.use_project(project)  # its secrets never leave the process (flue.redaction)
        self.adapter = adapter
        self.stores = stores
        self.dev = dev
        self.sink = EventSink()
        # flue_observe plugins of whichever project is loaded now (flue dev reloads it)
        self.sink.subscribe(observer_subscriber(self))
        self._workflow_modules: dict[str, tuple[float, Any]] = {}
        self._coordinator: Any = None
        self._warming: asyncio.Task[Any] | None = None
        #: This process as the owner of the leases it holds (workflow runs, submission claims):
        #: ``<replica id>~<boot id>`` once :meth:`claim_identity` ran (:mod:`flue.runtime.replica`).
        self.owner = new_id("proc")
        self.identity: Any = None
        #: The fixed port ``flue start`` listens on (part of the default replica id), if any.
        self.serving_port: int | None = None
        self._took_back = False
        self._recovery: Any = None

    def use_project(self, project: Project) -> None:
        """Swap in a reloaded project (``flue dev``): work started from now on uses it;
        persistence, the coordinator and work already in flight are kept."""
        project.raise_on_errors()
        self.project = project
        redaction.use_project(project)  # after flue dev re-read .env
        self._workflow_modules.clear()

    @functools.cached_property
    def run_leases(self) -> Any:
        """Renews the leases of the workflow runs this process executes (one task for all)."""
        from flue.runtime.workflows import RunLeases

        return RunLeases(self)

    @property
    def coordinator(self) -> Any:
        """The agent-instance coordinator (admission works without starting it;
        ``await runtime.start_coordinator()`` makes this process run submissions)."""
        if self._coordinator is None:
            from flue.runtime.instances import Coordinator

            cfg = self.project.config.coordinator
            self._coordinator = Coordinator(
                self, owner=self.owner, lease_s=cfg.lease, heartbeat_s=cfg.heartbeat_s, poll_interval=cfg.poll,
                max_concurrency=cfg.concurrency,
            )
        return self._coordinator

    async def claim_identity(self) -> Any:
        """Lock this server's replica id and own leases as ``<replica id>~<boot id>``
        (:mod:`flue.runtime.replica`; ``flue dev`` keeps an identity of its own per process).
        Raises ``ReplicaConflict`` when a configured id is held by another live process."""
        if self.identity is None:
            from flue.runtime.replica import ReplicaIdentity, claim_identity

            if self.dev:
                self.identity = ReplicaIdentity(self.owner, new_id("boot"), locked=False)
            else:
                cfg = self.project.config.coordinator
                self.identity = await claim_identity(
                    self.adapter, cfg.replica_id, self.project.root, self.serving_port, wait_s=cfg.lease
                )
                self.owner = self.identity.owner
                if self._coordinator is not None and not self._coordinator._tasks:
                    self._coordinator.owner = self.owner
        return self.identity

    def warm_models(self) -> None:
        """Import litellm in the background when the project's models need it, so the first
        prompt does not wait seconds for the import (servers call this at startup)."""
        from flue.models.registry import calls_litellm

        if self._warming is None and calls_litellm(self.project):
            from flue.models.litellm_provider import load_litellm

            self._warming = asyncio.get_running_loop().create_task(load_litellm(), name="flue-warm-litellm")

    async def start_coordinator(self) -> Any:
        """Run durable work in this process (servers do): claim agent submissions, and end
        workflow runs whose process died (:mod:`flue.runtime.run_recovery`)."""
        identity = await self.claim_identity()
        if not self._took_back:
            from flue.runtime.replica import take_back_leases

            self._took_back = True
            # our previous process died (we hold its lock): its leases are claimable now
            await take_back_leases(self.stores, identity)
        coordinator = self.coordinator
        if not coordinator._tasks:
            await coordinator.start()
        if self._recovery is None:
            from flue.runtime.run_recovery import RunRecovery

            self._recovery = RunRecovery(self, lease_s=self.project.config.coordinator.lease)
            self._recovery.start()
        return coordinator

    @classmethod
    async def open(cls, project: Project, *, dev: bool = False) -> Runtime:
        from flue.persistence.plugin import open_persistence

        project.raise_on_errors()
        adapter, stores = await open_persistence(project)
        runtime = cls(project, adapter, stores, dev=dev)
        _CURRENT.append(runtime)
        return runtime

    @staticmethod
    def current() -> Runtime:
        """The runtime of this process (for ``dispatch`` from plugins, channels and workflows)."""
        return current_runtime()

    async def close(self) -> None:
        if self._warming is not None and not self._warming.done():
            await asyncio.gather(self._warming, return_exceptions=True)  # a thread cannot be interrupted
        if self._recovery is not None:
            await self._recovery.stop()
        if self._coordinator is not None and self._coordinator._tasks:
            await self._coordinator.stop()
        if self in _CURRENT:
            _CURRENT.remove(self)
        http = sys.modules.get("flue.models.http")  # loaded once a native model client was used
        if http is not None and not _CURRENT:
            await http.close_client_session()
        close = getattr(self.adapter, "close", None)
        if close is not None:
            out = close()
            if inspect.isawaitable(out):
                await out

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
