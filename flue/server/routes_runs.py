"""``GET/HEAD /runs/<runId>``: a workflow run's event stream; ``?meta`` returns its run record
(Flue's ``RunRecord``: ``runId, workflowName, status, startedAt, payload``/``input``, and once
ended ``endedAt, isError, durationMs`` with ``result`` or ``error``).

Which runs are visible: a run whose workflow is in the current project and
HTTP-exposed. Runs of other workflows (CLI-only, removed) answer exactly like
unknown ids.

Auth, decided before anything about the run is disclosed. A visible run is
guarded by its workflow's declared auth. The answer to a request that may not
read the run is the one a missing run would get, so probing cannot tell
protected runs from missing ones:

- a run the request may read -> 200;
- otherwise, when the project has auth-protected exposed workflows and the
  request satisfies none of them -> 401 ``unauthorized`` (for a missing id as
  well as for a protected run);
- otherwise -> 404 ``run_not_found`` (a missing id; or a protected run read
  with another workflow's valid token).

A project without any protected workflow answers 404 for missing ids and
serves every visible run.
"""

from __future__ import annotations

import re

from aiohttp import web

from flue.persistence.base import RunRecord
from flue.runtime.workflows import run_stream_path
from flue.server.auth import accepts, auth_of, unauthorized
from flue.server.errors import NOSNIFF, method_not_allowed, run_not_found, run_store_unavailable
from flue.server.lookup import exposed_workflows
from flue.server.state import ServerState, state_of
from flue.server.streams import SECURITY_HEADERS, read_stream

METHODS = ("GET", "HEAD")
RUN_ID = re.compile(r"^run_[0-9A-HJKMNP-TV-Z]{26}$")


async def run_route(request: web.Request) -> web.StreamResponse:
    if request.method not in METHODS:
        raise method_not_allowed(request.method, METHODS)
    state = state_of(request)
    run_id = request.match_info["run_id"]
    runs = getattr(state.runtime.stores, "runs", None)
    if runs is None:
        raise run_store_unavailable()
    record = await runs.get_run(run_id) if RUN_ID.match(run_id) else None
    _authorize(request, state, record)
    assert record is not None
    if "meta" in request.rel_url.query:
        return web.json_response(record.view(), headers={**NOSNIFF, **SECURITY_HEADERS})
    with state.reading():
        return await read_stream(
            request, state.runtime.stores.streams, run_stream_path(run_id), not_found=run_not_found(run_id)
        )


def _authorize(request: web.Request, state: ServerState, record: RunRecord | None) -> None:
    """Return when ``request`` may read the run; otherwise raise the indistinguishable answer."""
    exposed = exposed_workflows(state)
    workflow = exposed.get(record.workflow_name) if record is not None else None
    if workflow is not None and accepts(request, auth_of(workflow.http)):
        return
    guards = [spec for w in exposed.values() if (spec := auth_of(w.http)) is not None]
    if guards and not any(accepts(request, spec) for spec in guards):
        raise unauthorized()
    raise run_not_found(request.match_info["run_id"])
