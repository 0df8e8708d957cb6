"""Issue 17: a workflow run cut off by a crash ends (``run_resume`` then an interrupted ``run_end``).

A real ``flue start`` runs a workflow that logs and then waits; the server is
SIGKILLed mid-run. After a restart (file SQLite), or on the surviving replica
(two replicas sharing PostgreSQL), the run's lapsed lease is noticed and the run
is ended exactly once: ``run_resume``, then ``run_end`` with
``error.name == "RunInterrupted"``, the stream closed and the record errored.
``flue logs`` following the run exits (2: the run ended in error).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fixtures.durability import started, write_files

from flue.testing.server_process import FlueServerProcess

SLOW_WORKFLOW = '''"""Logs, then waits far longer than any test: only a crash ends it."""

import asyncio

http = True


async def run(ctx):
    ctx.log.info("working", step=1)
    await asyncio.sleep(600)
    return {"finished": True}
'''

# lease 3 s: renewed every second, so a killed server's run lapses within 3 s of the kill
COORDINATOR = "coordinator: {lease: 3, poll: 0.2}\n"


def make_project(root: Path, persistence: str) -> Path:
    return write_files(root, {
        "flue.yaml": f"persistence: {persistence}\n{COORDINATOR}",
        "workflows/slow.py": SLOW_WORKFLOW,
    })


async def start_run(http: aiohttp.ClientSession, base: str) -> str:
    async with http.post(f"{base}/workflows/slow", json={"job": 1}) as resp:
        assert resp.status == 202, await resp.text()
        run_id = (await resp.json())["runId"]
    # wait until the run is under way: its log event is on the stream
    offset = "-1"
    async with asyncio.timeout(30):
        while True:
            async with http.get(f"{base}/runs/{run_id}", params={"offset": offset, "live": "long-poll"}) as resp:
                if resp.status == 200 and any(e["type"] == "log" for e in await resp.json()):
                    return run_id
                offset = resp.headers["Stream-Next-Offset"]


async def follow_logs(base: str, run_id: str) -> asyncio.subprocess.Process:
    """``flue logs <runId> --format ndjson`` against ``base`` (follows an active run)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flue", "logs", run_id, "--server", base, "--format", "ndjson",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


async def events_of(http: aiohttp.ClientSession, base: str, run_id: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/runs/{run_id}", params={"offset": "-1"}) as resp:
        assert resp.status == 200
        assert resp.headers.get("Stream-Closed") == "true"
        return await resp.json()


def assert_interrupted_once(events: list[dict[str, Any]]) -> None:
    types = [e["type"] for e in events]
    assert types[0] == "run_start" and "log" in types
    assert types.count("run_resume") == 1 and types.count("run_end") == 1, types
    assert types[-2:] == ["run_resume", "run_end"]
    resume, end = events[-2], events[-1]
    assert resume["workflowName"] == "slow" and resume["startedAt"] == events[0]["startedAt"]
    assert end["isError"] is True and end["error"]["name"] == "RunInterrupted"
    assert end["error"]["type"] == "run_interrupted" and end["durationMs"] > 0
    # numbering continues the run's own events
    assert [e["eventIndex"] for e in events] == list(range(len(events)))


async def check_record(http: aiohttp.ClientSession, base: str, run_id: str) -> None:
    async with http.get(f"{base}/runs/{run_id}?meta") as resp:
        record = await resp.json()
    assert record["status"] == "errored" and record["isError"] is True
    assert record["error"]["name"] == "RunInterrupted" and record["payload"] == {"job": 1}


async def finish_logs(proc: asyncio.subprocess.Process) -> list[str]:
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err.decode()  # exited, reporting the run's error
    return [line for line in out.decode().splitlines() if line]


async def test_sigkill_mid_run_then_restart_ends_the_run_as_interrupted(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", "{kind: sqlite, path: data/state.db}")
    server = FlueServerProcess(project)
    async with started(server), aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as http:
        run_id = await start_run(http, server.url)
        server.kill()
        assert await server.wait() == -signal.SIGKILL
        await server.start()
        logs = await follow_logs(server.url, run_id)  # the run is still active here, or just ended
        lines = await finish_logs(logs)
        assert '"run_resume"' in lines[-2] and '"RunInterrupted"' in lines[-1]
        assert_interrupted_once(await events_of(http, server.url, run_id))
        await check_record(http, server.url, run_id)
        # a further restart finds nothing left to do
        assert await server.stop() == 0
        await server.start()
        await asyncio.sleep(1.0)
        assert_interrupted_once(await events_of(http, server.url, run_id))
    assert "was interrupted by a crash" in server.output()
    assert "Traceback" not in server.output()


@pytest.mark.postgres
async def test_two_postgres_replicas_the_survivor_ends_the_run_once(tmp_path: Path) -> None:
    pytest.importorskip("flue_postgres", reason="flue-postgres is not installed")
    import uuid

    from test_persistence_postgres import admin, server_url

    url = await server_url()
    name = f"flue_test_{uuid.uuid4().hex[:12]}"
    project = make_project(tmp_path / "proj", f'{{kind: postgres, url: "{url}", schema: {name}}}')
    a, b = FlueServerProcess(project), FlueServerProcess(project)
    try:
        async with started(a, b), aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as http:
            run_id = await start_run(http, a.url)
            logs = await follow_logs(b.url, run_id)  # a reader on the other replica, following
            await asyncio.sleep(0.5)
            a.kill()
            assert await a.wait() == -signal.SIGKILL
            lines = await finish_logs(logs)
            assert '"RunInterrupted"' in lines[-1]
            assert_interrupted_once(await events_of(http, b.url, run_id))
            await check_record(http, b.url, run_id)
            # the dead replica comes back: the run is ended, nobody ends it again
            await a.start()
            await asyncio.sleep(2.0)
            assert_interrupted_once(await events_of(http, a.url, run_id))
        assert b.output().count("was interrupted by a crash") == 1
        assert "was interrupted by a crash" not in a.output()
    finally:
        await admin(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
