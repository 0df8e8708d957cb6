"""Every documented error type, produced by the request that should produce it.

Each assertion checks the status, the envelope ``{"error": {"type", "message",
"details", "dev"?}}``, ``X-Content-Type-Options: nosniff``, and that ``dev``
hints appear only in dev mode. The server is the real application over a
scratch project (see fixtures/server/support.py).
"""

from __future__ import annotations

import contextlib
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import WSServerHandshakeError
from fixtures.server.support import WORKFLOW_TOKEN_ENV, assert_envelope, scratch_project, served

from flue.runtime.workflows import start_run
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.scripted import ScriptedTurn

pytest_plugins = ["flue.testing.pytest_plugin"]

TYPED_WORKFLOW = textwrap.dedent(
    """
    http: true
    agent: assistant
    payload:
      type: object
      required: [person]
      properties: {person: {type: string}}
    steps:
      - prompt: "About {{ payload.person }}"
    """
)

JSON = {"Content-Type": "application/json"}


async def expect(resp: Any, status: int, type_: str, *, dev: bool | None = None) -> dict[str, Any]:
    assert resp.status == status, (resp.status, await resp.text())
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.content_type == "application/json"
    return assert_envelope(await resp.json(), type_, dev=dev)


# An agent with `model: false` whose workflow prompts it anyway: a Flue error (ModelNotConfiguredError).
NO_MODEL = {
    "agents/nomodel.md": "---\ndescription: no model\nmodel: false\ntools: []\n---\nx\n",
    "workflows/nomodel.py": textwrap.dedent(
        """
        http = True


        async def run(ctx):
            harness = await ctx.init("nomodel")
            session = await harness.session()
            await session.prompt("hi")
        """
    ),
}


@pytest.fixture
def project(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> Path:
    return scratch_project(tmp_path, scripted_model_server.url, {"workflows/typed.yaml": TYPED_WORKFLOW, **NO_MODEL})


async def test_invalid_request(project: Path, scripted_model_server: ScriptedModelServer) -> None:
    async with served(project) as srv:
        c = srv.client
        err = await expect(await c.post("/workflows/echo?wait=results", json={}), 400, "invalid_request")
        assert "results" in err["message"]
        await expect(await c.post("/workflows/echo?wait=result&wait=result", json={}), 400, "invalid_request")
        await expect(await c.post("/agents/assistant/a?wait=results", json={"message": "x"}), 400, "invalid_request")
        # bad bodies
        err = await expect(await c.post("/agents/assistant/a", json={"text": "hi"}), 400, "invalid_request")
        assert "message" in err["details"]
        await expect(await c.post("/agents/assistant/a", json={"message": 42}), 400, "invalid_request")
        await expect(await c.post("/agents/assistant/a", json=["hi"]), 400, "invalid_request")
        await expect(await c.post("/agents/assistant/a", data=b"", headers=JSON), 400, "invalid_request")
        bad_image = {"message": "look", "images": [{"type": "image", "data": "AAAA"}]}
        err = await expect(await c.post("/agents/assistant/a", json=bad_image), 400, "invalid_request")
        assert "mimeType" in err["details"] and "AAAA" not in err["details"]
        # any JSON value is a workflow payload, as in Flue (an array too); a schema may refuse it
        assert (await c.post("/workflows/echo", json=[1, 2])).status == 202
        err = await expect(await c.post("/workflows/typed", json={"who": "x"}), 400, "invalid_request")
        assert "person" in err["details"]
        # an id of more than 512 characters
        await expect(await c.post("/agents/assistant/" + "x" * 513, json={"message": "x"}), 400, "invalid_request")
        # stream query parameters, on an existing run
        run_id = (await (await c.post("/workflows/echo?wait=result", json={})).json())["runId"]
        for query in ("offset=bogus", "live=sse", "live=forever&offset=-1", "offset=-1&tail=0", "offset=-1&offset=now"):
            await expect(await c.get(f"/runs/{run_id}?{query}"), 400, "invalid_request")
    # nothing above reached the model (the typed workflow was refused before running)
    assert scripted_model_server.requests == []


async def test_invalid_json_and_unsupported_media_type(project: Path) -> None:
    async with served(project) as srv:
        c = srv.client
        for path in ("/workflows/echo", "/agents/assistant/a"):
            err = await expect(await c.post(path, data=b'{"message": ', headers=JSON), 400, "invalid_json")
            assert "line 1" in err["details"]
            await expect(await c.post(path, data=b"\xff\xfe", headers=JSON), 400, "invalid_json")
            await expect(
                await c.post(path, data=b'{"message": "hi"}', headers={"Content-Type": "text/plain"}),
                415, "unsupported_media_type",
            )
            await expect(await c.post(path, data=b"message=hi", headers={"Content-Type": "application/x-www-form-urlencoded"}),
                         415, "unsupported_media_type")
        # a required body that is missing, without a content type
        await expect(await c.post("/agents/assistant/a"), 415, "unsupported_media_type")
        # application/*+json is JSON
        resp = await c.post("/workflows/echo?wait=result", data=b'{"k": 1}', headers={"Content-Type": "application/vnd.api+json"})
        assert resp.status == 200


@pytest.mark.parametrize("dev", [False, True])
async def test_not_found_types(project: Path, dev: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # the project has a token-guarded workflow: /runs/<id> answers 404 only to a request that
    # satisfies some workflow's auth (see test_server_auth.py); carry that token here
    monkeypatch.setenv(WORKFLOW_TOKEN_ENV, "wf-token")
    token = {"Authorization": "Bearer wf-token"}
    async with served(project, dev=dev) as srv:
        c = srv.client
        for agent in ("missing", "internal"):  # unknown and non-HTTP agents look the same
            for resp in (
                await c.post(f"/agents/{agent}/a", json={"message": "hi"}),
                await c.get(f"/agents/{agent}/a?offset=-1"),
            ):
                err = await expect(resp, 404, "agent_not_found", dev=dev)
                assert agent in err["message"]
                if dev and agent == "missing":
                    assert err["dev"] == 'Available agents: "assistant", "guarded".'
                elif dev:  # dev mode only: the agent exists, and what exposes it
                    assert err["dev"] == ('Agent "internal" exists (agents/internal.md) but is not exposed over '
                                          'HTTP: add `http: true` to its frontmatter. '
                                          'Available agents: "assistant", "guarded".')
        for workflow in ("missing", "private"):
            err = await expect(await c.post(f"/workflows/{workflow}", json={}), 404, "workflow_not_found", dev=dev)
            if dev:
                assert '"echo"' in err["dev"] and '"private"' not in err["dev"].split("Available")[1]
                assert ("add `http = True` at its top level" in err["dev"]) == (workflow == "private"), err
        for path in ("/nothing", "/agents/assistant", "/agents/assistant/a/b", "/workflows", "/runs"):
            await expect(await c.get(path), 404, "route_not_found")
        await expect(await c.get("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV", headers=token), 404, "run_not_found")
        await expect(await c.get("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV?meta", headers=token), 404, "run_not_found")
        await expect(await c.get("/runs/not-a-run-id?meta", headers=token), 404, "run_not_found")
        # a run of a workflow that is not exposed over HTTP is not visible
        handle = await start_run(srv.runtime, "private", {})
        await handle.wait()
        await expect(await c.get(f"/runs/{handle.run_id}?meta", headers=token), 404, "run_not_found")
        await expect(await c.get(f"/runs/{handle.run_id}?offset=-1", headers=token), 404, "run_not_found")
        # an agent instance's stream before its first prompt
        resp = await c.get("/agents/assistant/fresh?offset=-1")
        err = await expect(resp, 404, "stream_not_found")
        assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        head = await c.head("/agents/assistant/fresh")
        assert head.status == 404 and head.headers["X-Content-Type-Options"] == "nosniff"


async def test_method_not_allowed(project: Path) -> None:
    async with served(project) as srv:
        c = srv.client
        cases = [
            ("DELETE", "/agents/assistant/a", "GET, HEAD, POST"),
            ("PUT", "/agents/missing/a", "GET, HEAD, POST"),
            ("GET", "/workflows/echo", "POST"),
            ("DELETE", "/workflows/missing", "POST"),
            ("POST", "/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV", "GET, HEAD"),
            ("GET", "/channels/hooks/events", "HEAD, POST"),
        ]
        for method, path, allow in cases:
            resp = await c.request(method, path)
            err = await expect(resp, 405, "method_not_allowed")
            assert resp.headers["Allow"] == allow, (method, path)
            assert method in err["message"]
        resp = await c.post("/openapi.json")
        await expect(resp, 405, "method_not_allowed")
        assert "GET" in resp.headers["Allow"]


async def test_channels(project: Path) -> None:
    async with served(project) as srv:
        c = srv.client
        resp = await c.post("/channels/hooks/events", json={"n": 1})
        assert resp.status == 200 and await resp.json() == {"channel": "hooks", "got": {"n": 1}}
        resp = await c.get("/channels/hooks/webhooks/retries")
        assert resp.status == 200 and await resp.json() == {"suffix": "webhooks/retries"}
        for path in ("/channels/hooks", "/channels/hooks/", "/channels/hooks/unknown", "/channels/nochannel/events"):
            await expect(await c.post(path, json={}), 404, "route_not_found")
        # a handler returning something that is not a response
        err = await expect(await c.post("/channels/hooks/broken", json={}), 500, "internal_error", dev=False)
        assert "internal-channel-detail" not in str(err) and "dict" not in str(err)
    async with served(project, dev=True) as srv:
        err = await expect(await srv.client.post("/channels/hooks/broken", json={}), 500, "internal_error", dev=True)
        assert "dict" in err["dev"]


@pytest.mark.parametrize("dev", [False, True])
async def test_internal_error_for_a_failing_workflow(project: Path, dev: bool) -> None:
    async with served(project, dev=dev) as srv:
        resp = await srv.client.post("/workflows/boom?wait=result", json={})
        err = await expect(resp, 500, "internal_error", dev=dev)
        assert "hunter2" not in err["message"] + err["details"]
        if dev:
            assert err["dev"] == "ValueError: db password is hunter2"
        # the run record is finalized as errored, and the run can be found from the error
        run_id = err["meta"]["runId"]
        record = await (await srv.client.get(f"/runs/{run_id}?meta")).json()
        assert record["status"] == "errored" and record["error"]["name"] == "ValueError"


async def test_typed_500_for_a_failing_prompt(project: Path, scripted_model_server: ScriptedModelServer) -> None:
    """A Flue error from below the HTTP layer keeps its type (not an opaque internal_error)."""
    scripted_model_server.add(*[ScriptedTurn(error_status=400, error_message="bad request from provider")] * 3)
    async with served(project) as srv:
        resp = await srv.client.post("/agents/assistant/t?wait=result", json={"message": "hi"})
        err = await expect(resp, 500, "operation_failed", dev=False)
        assert err["message"]
        # the stream says the same
        events = await (await srv.client.get("/agents/assistant/t?offset=-1")).json()
        assert events[-1]["type"] == "submission_settled" and events[-1]["outcome"] == "failed"
        assert events[-1]["error"]["type"] == "operation_failed"

        # the same holds for a workflow that a Flue error ended (a plain exception is internal_error)
        resp = await srv.client.post("/workflows/nomodel?wait=result", json={})
        err = await expect(resp, 500, "model_not_configured", dev=False)
        assert "model" in err["message"] and err["meta"]["runId"].startswith("run_")


NO_RUNS_PLUGIN = '''
"""Persistence whose stores have no run store: agents work, workflow runs cannot be kept."""

from types import SimpleNamespace

from flue import hookimpl
from flue.persistence.sqlite import SQLiteAdapter


class NoRuns:
    def __init__(self):
        self.inner = SQLiteAdapter()

    async def migrate(self):
        await self.inner.migrate()

    async def connect(self):
        s = await self.inner.connect()
        return SimpleNamespace(sessions=s.sessions, streams=s.streams, submissions=s.submissions,
                               snapshots=s.snapshots)

    async def close(self):
        await self.inner.close()


@hookimpl
def flue_persistence(config, root):
    return NoRuns() if config.kind == "noruns" else None
'''


async def test_run_store_unavailable(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(reply("still here"))
    root = scratch_project(
        tmp_path, scripted_model_server.url, {"plugins/noruns.py": NO_RUNS_PLUGIN}, config="persistence: {kind: noruns}\n"
    )
    async with served(root) as srv:
        c = srv.client
        for resp in (
            await c.post("/workflows/echo", json={}),
            await c.post("/workflows/echo?wait=result", json={}),
            await c.get("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            await c.get("/runs/run_01ARZ3NDEKTSV4RRFFQ69G5FAV?meta"),
        ):
            await expect(resp, 501, "run_store_unavailable")
        # a workflow socket is refused in its handshake (after the upgrade only frames could say why)
        with pytest.raises(WSServerHandshakeError) as info:
            await c.ws_connect("/workflows/echo")
        assert info.value.status == 501
        # checks before the store still come first
        await expect(await c.post("/workflows/missing", json={}), 404, "workflow_not_found")
        await expect(await c.post("/workflows/echo?wait=nope", json={}), 400, "invalid_request")
        # agents do not need a run store
        resp = await c.post("/agents/assistant/a?wait=result", json={"message": "hi"})
        assert resp.status == 200 and (await resp.json())["result"]["text"] == "still here"


async def test_error_envelope_never_leaks_unknown_exceptions(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    """A plugin route that raises: 500 internal_error, no exception text outside dev mode."""
    plugin = textwrap.dedent(
        '''
        from flue import hookimpl


        async def explode(request):
            raise RuntimeError("secret-token-abc123")


        @hookimpl
        def flue_app(app, runtime):
            app.router.add_get("/explode", explode)
        '''
    )
    root = scratch_project(tmp_path, scripted_model_server.url, {"plugins/explode.py": plugin})
    async with served(root) as srv:
        resp = await srv.client.get("/explode")
        err = await expect(resp, 500, "internal_error", dev=False)
        assert "secret-token-abc123" not in await resp.text() and "RuntimeError" not in str(err)
    async with served(root, dev=True) as srv:
        err = await expect(await srv.client.get("/explode"), 500, "internal_error", dev=True)
        assert err["dev"] == "RuntimeError: secret-token-abc123"


async def test_an_error_after_a_stream_started_ends_it_without_an_envelope(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    """Once the status line is out, an error cannot become an envelope: the connection ends."""
    plugin = textwrap.dedent(
        '''
        from aiohttp import web

        from flue import hookimpl


        async def halfway(request):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(b"data: first\\n\\n")
            raise RuntimeError("store went away")


        @hookimpl
        def flue_app(app, runtime):
            app.router.add_get("/halfway", halfway)
        '''
    )
    root = scratch_project(tmp_path, scripted_model_server.url, {"plugins/halfway.py": plugin})
    async with served(root) as srv:
        resp = await srv.client.get("/halfway")
        assert resp.status == 200
        body = b""
        with contextlib.suppress(aiohttp.ClientPayloadError):
            async for chunk in resp.content.iter_any():
                body += chunk
        assert body == b"data: first\n\n"  # nothing appended: no envelope inside the event stream


async def test_mounted_in_an_outer_app_with_a_body_limit(project: Path) -> None:
    """build_flue_app mounted next to the application's own routes (the app.ts pattern)."""
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from flue.project import load_project
    from flue.runtime.runtime import Runtime
    from flue.server.app import build_flue_app
    from flue.server.errors import error_middleware

    runtime = await Runtime.open(load_project(project))

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    outer = web.Application(middlewares=[error_middleware], client_max_size=1024)
    outer.router.add_get("/health", health)
    outer.add_subapp("/api", build_flue_app(runtime))
    client = TestClient(TestServer(outer, host="127.0.0.1"))
    try:
        await client.start_server()
        assert await (await client.get("/health")).json() == {"ok": True}
        resp = await client.post("/api/workflows/echo?wait=result", json={"k": 1})
        assert resp.status == 200
        body = await resp.json()
        assert body["streamUrl"] == str(client.make_url(f"/api/runs/{body['runId']}"))
        err = await expect(await client.post("/api/workflows/echo", json={"k": "x" * 2000}), 413, "payload_too_large")
        assert "1024" in err["details"]
        await expect(await client.get("/elsewhere"), 404, "route_not_found")
    finally:
        await client.close()
        await runtime.close()
