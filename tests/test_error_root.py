"""One error root: Flue's errors carry their wire type and status, and the server renders them
by those attributes (flue.errors.FlueError), whatever module raised them."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from flue.errors import AgentNotFound, FlueError, serialize_error
from flue.persistence.base import StreamNotFound
from flue.runtime.workflows import InvalidPayload, WorkflowNotFound
from flue.server.errors import error_middleware, mark_prepared


@pytest.mark.parametrize(
    ("exc", "status", "type_"),
    [
        (AgentNotFound("unknown agent 'nope' (available: helper)"), 404, "agent_not_found"),
        (WorkflowNotFound("unknown workflow 'nope' (available: none)"), 404, "workflow_not_found"),
        (InvalidPayload("payload.topic: Field required"), 400, "invalid_request"),
        (StreamNotFound("agents/helper/1"), 404, "stream_not_found"),
    ],
)
async def test_an_escaped_flue_error_is_its_own_envelope(exc: FlueError, status: int, type_: str) -> None:
    async def handler(_request: web.Request) -> web.Response:
        raise exc

    app = web.Application(middlewares=[error_middleware])
    app.on_response_prepare.append(mark_prepared)
    app.router.add_get("/", handler)
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/")
        body = await response.json()
    assert response.status == status
    assert body["error"]["type"] == type_
    assert body["error"]["message"] == exc.args[0]  # caller-safe by contract, never quoted
    assert serialize_error(exc) == {"name": type(exc).__name__, "message": exc.args[0], "type": type_}
    assert isinstance(exc, LookupError | ValueError)  # still what callers caught before
