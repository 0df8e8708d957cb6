"""Declarative bearer auth (``http: {auth: {bearer_env: NAME}}``) on agents and workflows.

It guards prompts, stream reads, WebSocket upgrades and ``/runs/<runId>``, and
answers 401 before anything about the target's existence is disclosed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSServerHandshakeError
from fixtures.server.support import (
    AGENT_TOKEN_ENV,
    WORKFLOW_TOKEN_ENV,
    assert_envelope,
    scratch_project,
    served,
)

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

AGENT = {"Authorization": "Bearer agent-secret"}
WORKFLOW = {"Authorization": "Bearer wf-secret"}
UNKNOWN_RUN = "run_01ARZ3NDEKTSV4RRFFQ69G5FAV"


async def unauthorized(resp: Any) -> None:
    assert resp.status == 401, await resp.text()
    assert resp.headers["WWW-Authenticate"] == "Bearer"
    if resp.method == "HEAD":
        return
    err = assert_envelope(await resp.json(), "unauthorized")
    assert "secret" not in str(err)


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AGENT_TOKEN_ENV, "agent-secret")
    monkeypatch.setenv(WORKFLOW_TOKEN_ENV, "wf-secret")


async def test_agent_auth_guards_prompts_and_streams(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, tokens: None
) -> None:
    scripted_model_server.add(reply("ok"))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        # before the first prompt: 401 without the token, stream_not_found with it
        await unauthorized(await c.get("/agents/guarded/g1?offset=-1"))
        resp = await c.get("/agents/guarded/g1?offset=-1", headers=AGENT)
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "stream_not_found"

        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "agent-secret"}, WORKFLOW):
            await unauthorized(await c.post("/agents/guarded/g1", json={"message": "hi"}, headers=headers))
        # a refused prompt was not admitted
        resp = await c.get("/agents/guarded/g1?offset=-1", headers=AGENT)
        assert resp.status == 404

        resp = await c.post("/agents/guarded/g1?wait=result", json={"message": "hi"},
                            headers={"Authorization": "bearer agent-secret"})  # the scheme is case-insensitive
        assert resp.status == 200 and (await resp.json())["result"]["text"] == "ok"

        await unauthorized(await c.get("/agents/guarded/g1?offset=-1"))
        await unauthorized(await c.head("/agents/guarded/g1"))
        resp = await c.get("/agents/guarded/g1?offset=-1", headers=AGENT)
        assert resp.status == 200 and (await resp.json())[0]["type"] == "submission_admitted"

        # a socket needs the token too (as a header, or ?token= since browsers cannot set headers)
        with pytest.raises(WSServerHandshakeError) as info:
            await c.ws_connect("/agents/guarded/g1")
        assert info.value.status == 401
        ws = await c.ws_connect("/agents/guarded/g1?token=agent-secret")
        assert (await ws.receive_json(timeout=5))["type"] == "ready"
        await ws.close()
        # ?token= counts only on a completed upgrade: a plain read dressed with Upgrade headers is refused
        for fake in ({"Upgrade": "websocket"}, {"Upgrade": "websocket", "Connection": "Upgrade"},
                     {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}):
            await unauthorized(await c.get("/agents/guarded/g1?offset=-1&token=agent-secret", headers=fake))
        await unauthorized(await c.get("/agents/guarded/g1?offset=-1&token=agent-secret"))

        # the agent's auth does not leak onto other agents, and 404s stay 404s
        resp = await c.post("/agents/missing/g1", json={"message": "hi"})
        assert resp.status == 404
    assert len(scripted_model_server.requests) == 1


async def test_unset_token_variable_refuses_everything(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AGENT_TOKEN_ENV, raising=False)
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
            await unauthorized(await srv.client.post("/agents/guarded/g", json={"message": "x"}, headers=headers))
            body = await (await srv.client.post("/agents/guarded/g", json={"message": "x"}, headers=headers)).json()
            assert "dev" not in body["error"] and AGENT_TOKEN_ENV not in str(body)  # production says nothing more


async def test_dev_mode_401_says_the_token_variable_is_unset(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AGENT_TOKEN_ENV, raising=False)
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root, dev=True) as srv:
        resp = await srv.client.post("/agents/guarded/g", json={"message": "x"})
        await unauthorized(resp)
        err = (await resp.json())["error"]
        assert err["dev"].startswith(f"The environment variable {AGENT_TOKEN_ENV} (http.auth.bearer_env) is not set")
        assert ".env" in err["dev"]
        monkeypatch.setenv(AGENT_TOKEN_ENV, "agent-secret")  # set but the wrong token: no such hint
        resp = await srv.client.post("/agents/guarded/g", json={"message": "x"}, headers={"Authorization": "Bearer no"})
        await unauthorized(resp)
        assert "dev" not in (await resp.json())["error"]


async def test_workflow_auth_guards_invocation_and_runs(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, tokens: None
) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        await unauthorized(await c.post("/workflows/guarded", json={}))
        await unauthorized(await c.post("/workflows/guarded", json={}, headers=AGENT))
        resp = await c.post("/workflows/guarded?wait=result", json={}, headers=WORKFLOW)
        assert resp.status == 200
        run_id = (await resp.json())["runId"]

        # a guarded run and an unknown id get the same answer without the token
        for path in (f"/runs/{run_id}", f"/runs/{run_id}?meta", f"/runs/{UNKNOWN_RUN}", f"/runs/{UNKNOWN_RUN}?meta",
                     "/runs/garbage"):
            await unauthorized(await c.get(path))
        await unauthorized(await c.head(f"/runs/{run_id}"))
        resp = await c.get(f"/runs/{run_id}?meta", headers=WORKFLOW)
        assert resp.status == 200 and (await resp.json())["result"] == {"guarded": True}
        resp = await c.get(f"/runs/{run_id}?offset=-1", headers=WORKFLOW)
        assert resp.status == 200 and (await resp.json())[-1]["type"] == "run_end"
        resp = await c.get(f"/runs/{UNKNOWN_RUN}", headers=WORKFLOW)
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "run_not_found"

        # runs of an unguarded workflow stay readable without a token
        open_run = (await (await c.post("/workflows/echo?wait=result", json={})).json())["runId"]
        assert (await c.get(f"/runs/{open_run}?meta")).status == 200
