"""``POST /workflows/<name>``: start a run (202, or 200 with ``?wait=result``); ``GET`` with
``Upgrade: websocket`` opens a one-invocation socket.

Checks run in the order method (405, ``Allow: POST``), exposure (404
``workflow_not_found`` for unknown and non-HTTP workflows alike), auth (401),
``wait`` (400), body (413 past ``limits.body`` or ``limits.payload``, 415 /
``invalid_json``), run store (501), payload schema (400). A socket is refused with 501 in its handshake when there is no run
store. The body is optional JSON (empty means ``{}``), any JSON value, as in
Flue; it becomes ``ctx.payload``. Every answer about a run carries its id in
``X-Flue-Run-Id`` too. A run that raises in ``?wait=result`` mode answers
500 ``internal_error`` (or, when one of Flue's own errors ended it, that error's
type, e.g. ``model_not_configured``); its record says ``errored`` and its stream ends with
``run_end`` carrying the error.
"""

from __future__ import annotations

from aiohttp import web

from flue.runtime.workflows import InvalidPayload, WorkflowNotFound, start_run
from flue.server.auth import auth_of, require
from flue.server.bodies import json_body, read_body, wait_for_result
from flue.server.errors import (
    failure,
    invalid_request,
    method_not_allowed,
    run_store_unavailable,
    workflow_not_found,
)
from flue.server.limits import check_payload_size
from flue.server.lookup import exposed_workflow, run_stream_url
from flue.server.state import ServerState, state_of
from flue.server.websocket import is_websocket, workflow_socket
from flue.server.wire import WorkflowAdmission, WorkflowResult

#: A fresh run's stream is empty at admission: reading from the start replays the whole run.
ADMISSION_OFFSET = "-1"
#: The run id of a workflow response, also on errors (as Flue 0.11 sent it).
RUN_ID_HEADER = "X-Flue-Run-Id"


async def workflow_route(request: web.Request) -> web.StreamResponse:
    websocket = is_websocket(request)
    if request.method != "POST" and not websocket:
        raise method_not_allowed(request.method, ["POST"])
    state = state_of(request)
    name = request.match_info["name"]
    definition = exposed_workflow(state, name)
    require(request, auth_of(definition.http), upgrade=websocket)  # ?token= only for the upgrade below
    if websocket:
        # refuse in the handshake: once upgraded, only socket messages can carry an error
        if getattr(state.runtime.stores, "runs", None) is None:
            raise run_store_unavailable()
        return await workflow_socket(request, state, name)
    return await _invoke(request, state, name)


async def _invoke(request: web.Request, state: ServerState, name: str) -> web.Response:
    wait = wait_for_result(request)
    raw = await read_body(request)  # at most limits.body (413 past it)
    check_payload_size(len(raw), state.project.config.limits)
    payload = json_body(request, raw, required=False)
    payload = {} if payload is None else payload
    runtime = state.runtime
    if getattr(runtime.stores, "runs", None) is None:
        raise run_store_unavailable()
    try:
        handle = await start_run(runtime, name, payload, req=request)
    except InvalidPayload as exc:
        raise invalid_request("The payload does not match the workflow's schema.", str(exc)) from None
    except WorkflowNotFound:  # removed by a reload between the lookup and the admission
        raise workflow_not_found(name) from None
    state.track_run(handle.task)
    stream_url = run_stream_url(request, handle.run_id)
    headers = {"Location": stream_url, "Stream-Next-Offset": ADMISSION_OFFSET, RUN_ID_HEADER: handle.run_id}
    if not wait:
        admission = WorkflowAdmission(run_id=handle.run_id, stream_url=stream_url, offset=ADMISSION_OFFSET)
        return web.json_response(admission.wire(), status=202, headers=headers)
    record = await handle.wait()
    if record.status != "completed":
        # internal_error, or the Flue error's own type (model_not_configured...) as for agents
        raise failure(
            record.error or {},
            "The workflow run failed.",
            "The run's events, ending with run_end, are at streamUrl.",
            meta={"runId": handle.run_id, "streamUrl": stream_url},
            headers={RUN_ID_HEADER: handle.run_id},
        )
    result = WorkflowResult(run_id=handle.run_id, result=record.result, stream_url=stream_url, offset=ADMISSION_OFFSET)
    return web.json_response(result.wire(), status=200, headers=headers)
