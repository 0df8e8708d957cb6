"""Inspection: Flue's ``listAgents`` / ``listRuns`` / ``getRun``, from code.

::

    agents = await flue.list_agents()                  # [{name, description?, transports, created}]
    page = await flue.list_runs(status="errored", workflow_name="hello", limit=20)
    for record in page.runs: ...                       # newest first; page.next_cursor continues
    record = await flue.get_run("run_01...")           # a RunRecord, or None

They read the runtime of this process (``flue dev``/``flue start``/``flue run``,
or one opened with ``Runtime.open``); ``runtime=`` picks another. Outside a
running runtime they raise ``RuntimeError``; without a run store,
``RunStoreUnavailable``. The read-only admin mount (:mod:`flue.server.admin`)
serves the same over HTTP.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from flue.errors import FlueError
from flue.persistence.base import RunRecord, RunStatus
from flue.persistence.kit import DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime


class RunStoreUnavailable(FlueError):
    error_type = "run_store_unavailable"

    def __init__(self) -> None:
        super().__init__("Run history is not available in this runtime: its persistence adapter has no run store.")


class RunPage(BaseModel):
    """One page of :func:`list_runs`: newest first; ``next_cursor`` is set when more remain."""

    runs: list[RunRecord] = Field(default_factory=list)
    next_cursor: str | None = None

    def wire(self) -> dict[str, Any]:
        """Flue's shape: ``{runs: RunPointer[], nextCursor?}``."""
        out: dict[str, Any] = {"runs": [r.pointer() for r in self.runs]}
        if self.next_cursor:
            out["nextCursor"] = self.next_cursor
        return out


def _runtime(runtime: Runtime | None, fn: str) -> Runtime:
    if runtime is not None:
        return runtime
    from flue.runtime.runtime import Runtime

    try:
        return Runtime.current()
    except RuntimeError:
        raise RuntimeError(
            f"flue.{fn}() called before a runtime was configured: call it inside flue dev/start/run, "
            "or pass runtime= (await flue.runtime.Runtime.open(project))"
        ) from None


def _runs(runtime: Runtime) -> Any:
    runs = getattr(runtime.stores, "runs", None)
    if runs is None:
        raise RunStoreUnavailable()
    return runs


def agent_listing(runtime: Runtime) -> list[dict[str, Any]]:
    """``[{name, description?, transports: {http?: true}, created: true}]``, by name."""
    out = []
    for name, definition in sorted(runtime.project.agents.items()):
        item: dict[str, Any] = {"name": name}
        if definition.description:
            item["description"] = definition.description
        http = definition.http
        item["transports"] = {"http": True} if http is not None and http.enabled else {}
        item["created"] = True
        out.append(item)
    return out


async def list_agents(*, runtime: Runtime | None = None) -> list[dict[str, Any]]:
    """Every agent of the loaded project, as Flue's ``listAgents()`` gives them."""
    return agent_listing(_runtime(runtime, "list_agents"))


async def list_runs(
    *, status: RunStatus | None = None, workflow_name: str | None = None, limit: int | None = None,
    cursor: str | None = None, runtime: Runtime | None = None,
) -> RunPage:
    """Runs newest first (``startedAt``, then ``runId``, descending). ``limit`` defaults to 100
    (at most 1000; anything not positive means the default); an invalid cursor is ignored."""
    store = _runs(_runtime(runtime, "list_runs"))
    n = limit if isinstance(limit, int) and 0 < limit else DEFAULT_LIST_LIMIT
    try:
        records, nxt = await store.list_runs(workflow_name=workflow_name, status=status, limit=min(n, MAX_LIST_LIMIT),
                                             cursor=cursor)
    except ValueError:  # an invalid cursor is treated as none, as Flue does
        records, nxt = await store.list_runs(workflow_name=workflow_name, status=status, limit=min(n, MAX_LIST_LIMIT))
    return RunPage(runs=records, next_cursor=nxt)


async def get_run(run_id: str, *, runtime: Runtime | None = None) -> RunRecord | None:
    """The run's record, or None."""
    return await _runs(_runtime(runtime, "get_run")).get_run(run_id)
