"""``flue dev``, ``flue start`` and ``flue logs`` as real subprocesses.

- ``flue dev`` on the example project at the repository root (its offline
  model plugin) answers workflows and agent prompts over HTTP;
- ``flue dev`` on a scratch project with the scripted model server: a second
  prompt carries the first exchange, an edited agent file is picked up, a
  broken edit keeps the last good project serving while printing diagnostics;
- ``flue start`` drains an in-flight ``?wait=result`` on SIGTERM and exits 0;
- ``flue logs`` replays, filters and follows runs of an in-process server.

Every subprocess is killed by PID when its test ends (see fixtures/server/support.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fixtures.server.support import (
    AGENT_TOKEN_ENV,
    REPO,
    WORKFLOW_TOKEN_ENV,
    cli_env,
    flue_cli,
    flue_server,
    scratch_project,
    served,
    wait_for_file,
)

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]


async def read_until_settled(client: httpx.AsyncClient, url: str, offset: str) -> list[dict]:
    """An agent stream's events from ``offset`` until a submission settles (catch-up polling)."""
    events: list[dict] = []
    async with asyncio.timeout(15):
        while True:
            resp = await client.get(url, params={"offset": offset, "live": "long-poll"})
            if resp.status_code == 200:
                events += resp.json()
                offset = resp.headers["Stream-Next-Offset"]
                if any(e["type"] == "submission_settled" for e in events):
                    return events


async def run_ended(client, run_id: str) -> None:
    async with asyncio.timeout(10):
        while True:
            record = await (await client.get(f"/runs/{run_id}?meta")).json()
            if record["status"] != "active":
                return
            await asyncio.sleep(0.02)


# -- flue dev on the example project ----------------------------------------------------------


async def test_flue_dev_serves_the_example_project() -> None:
    instance = f"test-{uuid.uuid4().hex[:8]}"
    async with flue_server("dev", cwd=REPO) as dev, httpx.AsyncClient(timeout=15) as client:
        resp = await client.post(f"{dev.url}/workflows/hello?wait=result", json={"name": "Ada"})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["result"] == {"greeting": "Hello, Ada! It is a real pleasure to meet you."}
        assert body["streamUrl"] == f"{dev.url}/runs/{body['runId']}"

        resp = await client.post(f"{dev.url}/agents/assistant/{instance}", json={"message": "A greeting for Bo."})
        assert resp.status_code == 202
        admitted = resp.json()
        assert admitted["streamUrl"] == f"{dev.url}/agents/assistant/{instance}"
        events = await read_until_settled(client, admitted["streamUrl"], admitted["offset"])
        assert events[0]["type"] == "submission_admitted" and events[0]["submissionId"] == admitted["submissionId"]
        assert events[-1]["result"]["text"] == "Hello, Bo! It is a real pleasure to meet you."

        # dev mode: 404s carry the dev hint (what is exposed)
        resp = await client.post(f"{dev.url}/agents/reviewer/{instance}", json={"message": "hi"})
        assert resp.status_code == 404
        assert resp.json()["error"]["dev"] == (
            'Agent "reviewer" exists (agents/reviewer.md) but is not exposed over HTTP: add `http: true` to its '
            'frontmatter. Available agents: "assistant", "support".')

        # the run is readable by flue logs from the dev server
        code, out, err = await flue_cli("logs", body["runId"], "--server", dev.url, "--format", "ndjson", cwd=REPO)
        assert code == 0, err
        lines = [json.loads(line) for line in out.splitlines()]
        assert lines[0]["type"] == "run_start" and lines[-1]["type"] == "run_end"

        dev.signal(signal.SIGTERM)
        assert await dev.wait() == 143
    assert "POST /workflows/hello?wait=result" in dev.output  # the dev access log


# -- flue dev: conversation and reloads ---------------------------------------------------------


async def test_flue_dev_conversation_and_reload(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("Hello Ada."), reply("You are Ada."), reply("Still Ada."), reply("Hi from helper."),
              reply("Ada, still."))
    root = scratch_project(tmp_path, model.url, {".env": f"{AGENT_TOKEN_ENV}=first\n"})
    agent_file = root / "agents" / "assistant.md"
    async with flue_server("dev", cwd=root) as dev, httpx.AsyncClient(timeout=30) as client:
        url = f"{dev.url}/agents/assistant/u1"

        async def ask(message: str, target: str = url) -> httpx.Response:
            return await client.post(target, params={"wait": "result"}, json={"message": message})

        assert (await ask("I am Ada.")).json()["result"]["text"] == "Hello Ada."
        assert (await ask("Who am I?")).json()["result"]["text"] == "You are Ada."
        history = [(m["role"], m["content"]) for m in model.requests[1]["messages"] if m["role"] != "system"]
        assert history == [("user", "I am Ada."), ("assistant", "Hello Ada."), ("user", "Who am I?")]
        assert "You are terse." in model.requests[1]["messages"][0]["content"]

        # an edited agent file is picked up; the instance keeps its conversation
        mark = len(dev.lines)
        agent_file.write_text("---\ndescription: test assistant\nhttp: true\ntools: []\n---\nYou are verbose.\n")
        await dev.wait_for_line(r"^flue dev: reloaded$", after=mark)
        assert (await ask("Again?")).json()["result"]["text"] == "Still Ada."
        system = model.requests[2]["messages"][0]["content"]
        assert "You are verbose." in system and "You are terse." not in system
        assert [m["role"] for m in model.requests[2]["messages"]].count("user") == 3

        # a new agent file: a new HTTP agent
        mark = len(dev.lines)
        (root / "agents" / "helper.md").write_text("---\ndescription: helper\nhttp: true\ntools: []\n---\nHelp.\n")
        await dev.wait_for_line(r"^flue dev: reloaded$", after=mark)
        resp = await ask("hi", f"{dev.url}/agents/helper/h1")
        assert resp.status_code == 200 and resp.json()["result"]["text"] == "Hi from helper."

        # .env edits reach declarative auth (the token is read per request)
        guarded = f"{dev.url}/agents/guarded/g1"

        async def auth_status(token: str) -> int:
            return (await client.get(guarded, headers={"Authorization": f"Bearer {token}"})).status_code

        assert await auth_status("first") == 404  # authorized; the stream does not exist yet
        mark = len(dev.lines)
        (root / ".env").write_text(f"{AGENT_TOKEN_ENV}=second\n")
        await dev.wait_for_line(r"^flue dev: reloaded$", after=mark)
        assert (await auth_status("first"), await auth_status("second")) == (401, 404)

        # a broken edit: diagnostics printed, the last good project keeps serving
        mark = len(dev.lines)
        agent_file.write_text("---\ndescription: [unclosed\n---\nBroken.\n")
        await dev.wait_for_line(r"still serving the last good version", after=mark)
        await dev.wait_for_line(r"agents/assistant\.md:2: error\[yaml\.syntax\]", after=mark)
        resp = await ask("Still there?")
        assert resp.status_code == 200 and resp.json()["result"]["text"] == "Ada, still."
        assert "You are verbose." in model.requests[4]["messages"][0]["content"]
        dev.signal(signal.SIGINT)
        assert await dev.wait() == 130


async def test_flue_dev_refuses_a_broken_project(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9", {"agents/bad.md": "---\nbogus_key: 1\n---\nx\n"})
    code, _out, err = await flue_cli("dev", "--port", "0", cwd=root, timeout=20)
    assert code == 1
    assert "agents/bad.md" in err and "bogus_key" in err


# -- flue start ---------------------------------------------------------------------------------


async def test_flue_start_graceful_sigterm_and_prefix(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9")
    gate = tmp_path / "gate"
    async with flue_server("start", "--host", "127.0.0.1", "--prefix", "api/", cwd=root) as srv, \
            httpx.AsyncClient(timeout=30) as client:
        # "api/" normalized; the address really bound (--port 0: the port the system picked)
        line = await srv.wait_for_line(rf"flue start: serving .* on {re.escape(srv.url)}/api \(listening on (.*)\)$")
        assert line.group(1) == f"127.0.0.1:{srv.url.rsplit(':', 1)[1]}" and not srv.url.endswith(":0")
        # no persistence: in flue.yaml: in memory, said once, before the address
        warnings = [x for x in srv.lines if "persistence is in memory" in x]
        assert len(warnings) == 1 and "flue.yaml" in warnings[0]
        resp = await client.get(f"{srv.url}/api/health")
        assert resp.status_code == 200 and resp.json()["status"] == "ok"
        resp = await client.post(f"{srv.url}/api/workflows/echo", json={"x": 1})
        assert resp.status_code == 202
        assert resp.json()["streamUrl"] == f"{srv.url}/api/runs/{resp.json()['runId']}"
        resp = await client.post(f"{srv.url}/agents/assistant/a", json={"message": "hi"})
        assert resp.status_code == 404 and resp.json()["error"]["type"] == "route_not_found"
        # production mode: no dev hints
        resp = await client.post(f"{srv.url}/api/agents/missing/a", json={"message": "hi"})
        assert "dev" not in resp.json()["error"]
        # flue logs reads runs under the prefix
        run_id = (await client.post(f"{srv.url}/api/workflows/echo?wait=result", json={})).json()["runId"]
        code, out, err = await flue_cli("logs", run_id, "--server", f"{srv.url}/api", "--format", "ndjson", cwd=root)
        assert code == 0 and json.loads(out.splitlines()[-1])["type"] == "run_end", err

        in_flight = asyncio.create_task(
            client.post(f"{srv.url}/api/workflows/gated", params={"wait": "result"}, json={"gate": str(gate)})
        )
        await wait_for_file(Path(str(gate) + ".started"))
        srv.signal(signal.SIGTERM)
        await srv.wait_for_line(r"flue start: shutting down")
        gate.write_text("open")  # the run may finish only now, after the signal
        async with asyncio.timeout(15):
            resp = await in_flight
        assert resp.status_code == 200, resp.text
        assert resp.json()["result"] == {"released": True}
        assert await srv.wait() == 0


async def test_port_in_use_suggests_another_port(tmp_path: Path) -> None:
    import socket

    root = scratch_project(tmp_path, "http://127.0.0.1:9")
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for command in ("dev", "start"):
            code, _out, err = await flue_cli(command, "--host", "127.0.0.1", "--port", str(port), cwd=root,
                                             timeout=20)
            assert code == 1, err
            lines = [x for x in err.splitlines() if x.startswith(f"flue {command}:")]
            assert lines == [f"flue {command}: port {port} is already in use on 127.0.0.1 (another server is "
                             f"running?); pick another with --port, e.g. --port {port + 1} (0 picks a free one)"], err
            assert "Traceback" not in err


async def test_flue_start_with_a_database_does_not_warn(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9", config="persistence: {path: .flue-state/state.db}\n")
    async with flue_server("start", "--host", "127.0.0.1", cwd=root) as srv:
        await srv.wait_for_line(r"flue start: serving .* \(listening on 127\.0\.0\.1:\d+\)$")
        assert "in memory" not in srv.output


# -- flue logs ----------------------------------------------------------------------------------

CHATTY = textwrap.dedent(
    """
    http = True


    async def run(ctx):
        for i in range(2000):
            ctx.log.info("line", i=i, padding="x" * 100)
        return {"lines": 2000}
    """
)


@pytest.fixture
def logs_project(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> Path:
    return scratch_project(tmp_path, scripted_model_server.url, {"workflows/chatty.py": CHATTY})


async def test_flue_logs_replay_formats_and_filters(logs_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKFLOW_TOKEN_ENV, "wf-token")
    async with served(logs_project) as srv:
        c = srv.client
        ok = (await (await c.post("/workflows/echo?wait=result", json={"a": 1})).json())["runId"]
        boom = (await (await c.post("/workflows/boom", json={})).json())["runId"]
        await run_ended(c, boom)
        server = srv.base

        running = asyncio.Semaphore(4)  # side by side, without starving a small machine

        async def logs(*args: str) -> tuple[int, str, str]:
            async with running:
                return await flue_cli("logs", *args, cwd=logs_project)

        code, out, err = await logs(ok, "--server", server, "--format", "ndjson")
        assert code == 0, err
        events = [json.loads(line) for line in out.splitlines()]
        assert [e["type"] for e in events] == ["run_start", "log", "run_end"]
        assert all("offset" in e for e in events)

        # the other invocations are independent of each other
        pretty, since, types, limit, failed, failed_ndjson, unknown, unreachable, bad_header = await asyncio.gather(
            logs(ok, "--server", server, "--no-follow"),
            logs(ok, "--server", server, "--format", "ndjson", "--since", events[0]["offset"]),
            logs(ok, "--server", server, "--format", "ndjson", "--types", "run_end,log"),
            logs(ok, "--server", server, "--format", "ndjson", "--limit", "2"),
            logs(boom, "--server", server),
            logs(boom, "--server", server, "--no-follow", "--format", "ndjson", "--types", "run_end"),
            logs("run_01ARZ3NDEKTSV4RRFFQ69G5FAV", "--server", server, "--header", "Authorization: Bearer wf-token"),
            logs(ok, "--server", "http://127.0.0.1:9"),
            logs(ok, "--header", "Accept: text/plain"),
        )

        def types_of(out: str) -> list[str]:
            return [json.loads(line)["type"] for line in out.splitlines()]

        code, out, err = pretty
        assert code == 0 and out == "", err  # pretty output goes to stderr
        assert f"▶ run {ok} (echo)" in err and "[info] echoing" in err and "✔ run completed" in err
        # --since resumes strictly after an offset; --types and --limit filter
        assert since[0] == 0 and types_of(since[1]) == ["log", "run_end"]
        assert types[0] == 0 and types_of(types[1]) == ["log", "run_end"]
        assert limit[0] == 0 and types_of(limit[1]) == ["run_start", "log"]
        # a run that ended with an error: exit 2 (pretty and ndjson, following or not)
        assert failed[0] == 2 and "✘ run errored" in failed[2] and "ValueError: db password is hunter2" in failed[2]
        assert failed_ndjson[0] == 2 and json.loads(failed_ndjson[1])["isError"] is True
        # failures: unknown run, unreachable server, a reserved header
        assert unknown[0] == 1 and "not found" in unknown[2]
        assert unreachable[0] == 1 and "cannot reach" in unreachable[2]
        assert bad_header[0] == 1 and "Accept" in bad_header[2]


async def test_flue_logs_auth_header(logs_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKFLOW_TOKEN_ENV, "wf-token")
    async with served(logs_project) as srv:
        resp = await srv.client.post("/workflows/guarded?wait=result", json={},
                                     headers={"Authorization": "Bearer wf-token"})
        run_id = (await resp.json())["runId"]
        code, _, err = await flue_cli("logs", run_id, "--server", srv.base, cwd=logs_project)
        assert code == 1 and "401" in err and "--header" in err
        code, out, err = await flue_cli("logs", run_id, "--server", srv.base, "--format", "ndjson",
                                        "--header", "Authorization: Bearer wf-token", cwd=logs_project)
        assert code == 0, err
        assert json.loads(out.splitlines()[-1])["result"] == {"guarded": True}


@contextlib.asynccontextmanager
async def logs_process(*args: str, cwd: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """``flue logs <args>`` with its stdout readable line by line; killed by PID at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flue", "logs", *args, cwd=cwd, env=cli_env(), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def read_event(proc: asyncio.subprocess.Process) -> dict:
    assert proc.stdout is not None
    async with asyncio.timeout(15):
        line = await proc.stdout.readline()
    assert line, "flue logs ended early"
    return json.loads(line)


async def test_flue_logs_follows_an_active_run(logs_project: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with served(logs_project) as srv:
        run_id = (await (await srv.client.post("/workflows/gated", json={"gate": str(gate)})).json())["runId"]
        await wait_for_file(Path(str(gate) + ".started"))
        # no --follow/--no-follow: the run is active, so it is followed until run_end
        async with logs_process(run_id, "--server", srv.base, "--format", "ndjson", cwd=logs_project) as proc:
            assert (await read_event(proc))["type"] == "run_start"
            assert (await read_event(proc))["message"] == "waiting"
            gate.write_text("open")  # what follows was appended after flue logs started reading
            assert (await read_event(proc))["message"] == "released"
            assert (await read_event(proc))["type"] == "run_end"
            async with asyncio.timeout(15):
                assert await proc.wait() == 0


async def test_flue_logs_ctrl_c_while_following(logs_project: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with served(logs_project) as srv:
        run_id = (await (await srv.client.post("/workflows/gated", json={"gate": str(gate)})).json())["runId"]
        await wait_for_file(Path(str(gate) + ".started"))
        args = (run_id, "--server", srv.base, "--follow", "--format", "ndjson")
        async with logs_process(*args, cwd=logs_project) as proc:
            assert (await read_event(proc))["type"] == "run_start"
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(15):
                assert await proc.wait() == 130
        gate.write_text("open")


async def test_flue_logs_into_a_closed_pipe(logs_project: Path) -> None:
    async with served(logs_project) as srv:
        run_id = (await (await srv.client.post("/workflows/chatty?wait=result", json={})).json())["runId"]
        code, out, err = await flue_cli("logs", run_id, "--server", srv.base, "--format", "ndjson",
                                        cwd=logs_project, shell_pipe="head -3")
    assert len(out.splitlines()) == 3 and json.loads(out.splitlines()[0])["type"] == "run_start"
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert code in (0, 141)  # 141: ended by a closed pipe, as shell tools report it
