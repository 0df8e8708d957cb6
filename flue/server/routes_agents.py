"""``/agents/<name>/<id>``: prompt an agent instance (POST), read its stream (GET/HEAD), or
open a WebSocket to it (GET with ``Upgrade``).

Order of checks, so nothing is disclosed before it should be: method (405),
exposure (404 ``agent_not_found``, the same for unknown and non-HTTP agents),
auth (401), then the request itself. Auth therefore guards stream reads and
sockets as well as prompts.

A prompt is admitted as a durable submission before the 202 is sent; the
``offset`` is the stream's tail just before admission, so reading from it
replays the whole interaction (``-1`` on a fresh instance). The stream is
``404 stream_not_found`` until the first admitted prompt (or dispatch).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import ValidationError

from flue.redaction import scrub
from flue.runtime.instances import AgentNotFound, instance_path
from flue.server.auth import auth_of, require
from flue.server.bodies import read_json_body, validation_details, wait_for_result
from flue.server.errors import (
    HttpError,
    agent_not_found,
    failure,
    invalid_request,
    method_not_allowed,
    stream_not_found,
)
from flue.server.limits import check_prompt
from flue.server.lookup import agent_stream_url, check_instance_id, exposed_agent
from flue.server.state import ServerState, state_of
from flue.server.streams import read_stream
from flue.server.websocket import agent_socket, is_websocket
from flue.server.wire import AgentAdmission, AgentPrompt, AgentResult

METHODS = ("GET", "HEAD", "POST")
# a ?wait=result request waits at most this long past the submission's own deadline
WAIT_SLACK_S = 60.0


async def agent_route(request: web.Request) -> web.StreamResponse:
    if request.method not in METHODS:
        raise method_not_allowed(request.method, METHODS)
    state = state_of(request)
    name, instance_id = request.match_info["name"], request.match_info["id"]
    definition = exposed_agent(state, name)
    websocket = is_websocket(request)
    require(request, auth_of(definition.http), upgrade=websocket)  # ?token= only for an upgrade made below
    check_instance_id(instance_id)
    if request.method == "POST":
        return await _prompt(request, state, name, instance_id)
    if websocket:
        return await agent_socket(request, state, name, instance_id)
    path = instance_path(name, instance_id)
    with state.reading():
        return await read_stream(request, state.runtime.stores.streams, path, not_found=stream_not_found(path))


async def _prompt(request: web.Request, state: ServerState, name: str, instance_id: str) -> web.Response:
    wait = wait_for_result(request)
    raw = await read_json_body(request, required=True)
    try:
        body = AgentPrompt.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request("The request body is invalid.", validation_details(exc)) from None
    check_prompt(body, state.project.config.limits)
    runtime = state.runtime
    try:
        sub, offset = await runtime.coordinator.admit_prompt(
            name, instance_id, body.message, images=body.image_dicts(), session=body.session or "default"
        )
    except AgentNotFound:  # removed by a reload between the lookup and the admission
        raise agent_not_found(name) from None
    stream_url = agent_stream_url(request)
    headers = {"Location": stream_url, "Stream-Next-Offset": offset}
    if not wait:
        admission = AgentAdmission(stream_url=stream_url, offset=offset, submission_id=sub.submission_id)
        return web.json_response(admission.wire(), status=202, headers=headers)
    deadline = _seconds_until(sub.deadline_at) + WAIT_SLACK_S
    done = await runtime.coordinator.wait(sub.submission_id, timeout=deadline, admitted=sub)
    if done.status != "completed":
        raise submission_failure(done.error or {})
    result = AgentResult(result=scrub(done.result), stream_url=stream_url, offset=offset, submission_id=sub.submission_id)
    return web.json_response(result.wire(), status=200, headers=headers)


def _seconds_until(iso: str) -> float:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return 3600.0
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def submission_failure(error: dict[str, Any]) -> HttpError:
    """A failed submission as a 500: typed for Flue's own errors (``model_not_configured``,
    ``deadline_exceeded``...), ``internal_error`` for anything else."""
    return failure(error, "The prompt failed.")
