"""The Python client (flue/client.py) against the real server: agents.send/prompt/stream,
workflows.invoke (202 and wait="result"), runs.get/stream/events, and typed errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from fixtures.server.support import AGENT_TOKEN_ENV, scratch_project, served, wait_for_file

import flue as flue_api
from flue.client import (
    AgentAdmission,
    AgentResult,
    FlueClient,
    FlueClientError,
    WorkflowAdmission,
    WorkflowResult,
)
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]


async def test_agents(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(reply("first answer"), reply("second answer"))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv, FlueClient(srv.base) as flue:
        admitted = await flue.agents.send("assistant", "c 1?", "hello")  # an id that needs quoting
        assert isinstance(admitted, AgentAdmission) and admitted.offset == "-1"
        assert admitted.stream_url == f"{srv.base}/agents/assistant/c%201%3F"
        events = []
        async with asyncio.timeout(10):
            async for event in flue.agents.stream("assistant", "c 1?", offset=admitted.offset):
                events.append(event)
                if event["type"] == "submission_settled":
                    break
        assert events[0]["submissionId"] == admitted.submission_id
        assert events[-1]["result"]["text"] == "first answer"

        done = await flue.agents.prompt("assistant", "c 1?", "again")
        assert isinstance(done, AgentResult) and done.result.text == "second answer"
        assert done.result.model.id == "chat-model" and done.result.usage.total_tokens > 0
        # catch-up read of the whole instance: both exchanges
        everything = [e async for e in flue.agents.stream("assistant", "c 1?", live=False)]
        assert [e["type"] for e in everything].count("submission_settled") == 2

        with pytest.raises(FlueClientError) as info:
            await flue.agents.send("internal", "x", "hi")
        assert (info.value.status, info.value.type) == (404, "agent_not_found")
        with pytest.raises(FlueClientError) as info:
            async for _ in flue.agents.stream("assistant", "never", live=False):
                pass
        assert (info.value.status, info.value.type) == (404, "stream_not_found")


async def test_workflows_and_runs(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv, FlueClient(srv.base) as flue:
        done = await flue.workflows.invoke("echo", {"n": 1}, wait="result")
        assert isinstance(done, WorkflowResult) and done.result == {"payload": {"n": 1}, "run": done.run_id}

        record = await flue.runs.get(done.run_id)
        assert record.status == "completed" and record.workflow_name == "echo" and record.result == done.result
        events = await flue.runs.events(done.run_id)
        assert events[0]["type"] == "run_start" and events[-1]["type"] == "run_end"

        # a live stream of a run in progress ends after run_end (the stream closes)
        gate = tmp_path / "gate"
        admitted = await flue.workflows.invoke("gated", {"gate": str(gate)})
        assert isinstance(admitted, WorkflowAdmission) and admitted.stream_url == srv.url(f"/runs/{admitted.run_id}")
        assert (await flue.runs.get(admitted.run_id)).status == "active"
        await wait_for_file(Path(str(gate) + ".started"))
        seen: list[dict] = []
        waiting = asyncio.Event()

        async def follow() -> None:
            async for event in flue.runs.stream(admitted.run_id):
                seen.append(event)
                if event.get("message") == "waiting":
                    waiting.set()

        follower = asyncio.create_task(follow())
        async with asyncio.timeout(10):
            await waiting.wait()
        gate.write_text("open")
        async with asyncio.timeout(10):
            await follower  # returns by itself once the stream is closed
        assert [e.get("message") for e in seen if e["type"] == "log"] == ["waiting", "released"]
        assert seen[-1]["type"] == "run_end" and seen[-1]["result"] == {"released": True}

        # resume after an offset (offsets come from the client's own read)
        pairs = [p async for p in flue.read(flue.runs.url(admitted.run_id))]
        middle_offset = pairs[1][1]
        rest = await flue.runs.events(admitted.run_id, offset=middle_offset)
        assert rest == [e for e, _ in pairs[2:]]

        with pytest.raises(FlueClientError) as info:
            await flue.workflows.invoke("boom", wait="result")
        assert (info.value.status, info.value.type) == (500, "internal_error")
        assert info.value.meta["runId"].startswith("run_")
        with pytest.raises(FlueClientError) as info:
            await flue.runs.get("run_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        # the project has a token-guarded workflow, so an anonymous probe learns nothing
        assert (info.value.status, info.value.type) == (401, "unauthorized")
        with pytest.raises(ValueError):
            await flue.workflows.invoke("echo", wait="results")  # type: ignore[call-overload]


async def test_headers_and_transport_errors(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(AGENT_TOKEN_ENV, "tok")
    scripted_model_server.add(reply("guarded answer"))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        async with FlueClient(srv.base) as anonymous:
            with pytest.raises(FlueClientError) as info:
                await anonymous.agents.prompt("guarded", "g", "hi")
            assert (info.value.status, info.value.type) == (401, "unauthorized")
        async with FlueClient(srv.base, headers={"Authorization": "Bearer tok"}) as flue:
            assert (await flue.agents.prompt("guarded", "g", "hi")).result.text == "guarded answer"
            events = [e async for e in flue.agents.stream("guarded", "g", live=False)]
            assert events[-1]["type"] == "submission_settled"
        base = srv.base
    # the server is gone: a transport failure, no status
    async with FlueClient(base, timeout=2) as flue:
        with pytest.raises(FlueClientError) as info:
            await flue.runs.get("run_01ARZ3NDEKTSV4RRFFQ69G5FAV")
        assert info.value.status is None


async def test_wait_run_and_the_admin_mount(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """agents.wait and workflows.run follow streams to their terminal events; the admin mount
    (enabled with a token in flue.yaml) lists agents and runs, and inspection works from code."""
    monkeypatch.setenv("TEST_ADMIN_TOKEN", "adm1n")
    scripted_model_server.add(reply("waited for"))
    root = scratch_project(tmp_path, scripted_model_server.url,
                           config="admin: {auth: {bearer_env: TEST_ADMIN_TOKEN}}\n")
    async with served(root) as srv, FlueClient(srv.base) as flue:
        admitted = await flue.agents.send("assistant", "w", "hi")
        seen: list[str] = []
        answer = await flue.agents.wait(admitted, on_event=lambda e: seen.append(e["type"]))
        assert answer.text == "waited for" and seen[-1] == "submission_settled"
        run = await flue.workflows.run("echo", {"n": 2})
        assert run.result == {"payload": {"n": 2}, "run": run.run_id}
        with pytest.raises(FlueClientError) as info:
            await flue.workflows.run("boom")
        assert info.value.type == "ValueError" and "hunter2" in info.value.message  # as run_end carries it

        with pytest.raises(FlueClientError) as info:
            await flue.admin.agents()
        assert info.value.status == 401
        async with FlueClient(srv.base, headers={"Authorization": "Bearer adm1n"}) as admin:
            agents = {a["name"]: a for a in await admin.admin.agents()}
            assert agents["assistant"]["transports"] == {"http": True} and agents["assistant"]["created"] is True
            assert agents["internal"]["transports"] == {}
            runs, cursor = await admin.admin.runs(workflow_name="echo")
            assert [r.run_id for r in runs] == [run.run_id] and cursor is None
            first, cursor = await admin.admin.runs(limit=1)
            assert len(first) == 1 and cursor is not None
            more, _ = await admin.admin.runs(limit=1, cursor=cursor)
            assert more[0].run_id != first[0].run_id
            errored, _ = await admin.admin.runs(status="errored")
            assert [r.workflow_name for r in errored] == ["boom"]
            bad = await srv.client.get("/admin/runs?limit=0", headers={"Authorization": "Bearer adm1n"})
            assert bad.status == 400
            record = await (await srv.client.get(f"/admin/runs/{run.run_id}",
                                                 headers={"Authorization": "Bearer adm1n"})).json()
            assert record["owner"] == {"kind": "workflow", "workflowName": "echo", "instanceId": run.run_id}
            assert record["result"] == run.result

        # the same from code, through the runtime of this process
        page = await flue_api.list_runs(workflow_name="echo", runtime=srv.runtime)
        assert [r.run_id for r in page.runs] == [run.run_id]
        assert (await flue_api.get_run(run.run_id, runtime=srv.runtime)).status == "completed"
        assert await flue_api.get_run("run_01ARZ3NDEKTSV4RRFFQ69G5FAV", runtime=srv.runtime) is None
        names = [a["name"] for a in await flue_api.list_agents(runtime=srv.runtime)]
        assert "assistant" in names and names == sorted(names)


async def test_the_admin_mount_is_off_unless_configured(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        assert (await srv.client.get("/admin/agents")).status == 404
