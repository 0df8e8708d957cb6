"""Issue 19: a server killed and restarted at once takes back its own work without waiting out leases.

A real ``flue start`` on file SQLite (and on PostgreSQL when it is reachable),
with the default 30 s lease and a slow scripted model (each answer streams for
about a second), admits prompts to several agent instances and starts a
workflow run, and is SIGKILLed while they are in flight. Restarted at once as
the same replica (same port, so the same default identity; or the same
``FLUE_REPLICA_ID`` on another port), it holds its replica lock, so it knows
its previous process is dead: the work that was in flight settles within 5 s
of the restart instead of after the lease, each submission exactly once, and
the interrupted run is ended. A second live process with the same configured
identity refuses to start.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fixtures.durability import scripted_project
from fixtures.postgres import drop_schema, fresh_schema, postgres_url, reachable_postgres_url

from flue.testing import ScriptedTurn, reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess, free_port

INSTANCES = 4
PER_INSTANCE = 2
WITHIN_S = 5.0
SLOW_WORKFLOW = '''"""Runs far longer than the test: only a kill ends it."""

import asyncio

http = True


async def run(ctx):
    await asyncio.sleep(300)
    return {"done": True}
'''


def echo(body: dict[str, Any]) -> ScriptedTurn:
    last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    return reply(f"echo: {last['content']}", chunk_size=4, delay=0.15)


def make_project(root: Path, model_url: str, persistence: str, coordinator: str = "{poll: 0.2}") -> Path:
    # the default lease (30 s): recovery must not wait for it
    return scripted_project(root, model_url, persistence=persistence, coordinator=coordinator, files={
        "agents/echo.md": "---\ndescription: echoes\nhttp: true\ntools: []\n---\nEcho.\n",
        "workflows/slow.py": SLOW_WORKFLOW,
    })


async def settlements(http: aiohttp.ClientSession, base: str, instance: str) -> list[dict[str, Any]]:
    async with http.get(f"{base}/agents/echo/{instance}", params={"offset": "-1"}) as resp:
        assert resp.status == 200, await resp.text()
        return [e for e in await resp.json() if e["type"] == "submission_settled"]


async def settled_at(http: aiohttp.ClientSession, base: str, instance: str, count: int) -> dict[str, float]:
    """Long-poll ``instance``'s stream until it holds ``count`` settlements: submission id -> when seen."""
    seen: dict[str, float] = {}
    offset = "-1"
    async with asyncio.timeout(60):
        while len(seen) < count:
            async with http.get(f"{base}/agents/echo/{instance}", params={"offset": offset, "live": "long-poll"}) as r:
                assert r.status in (200, 204), await r.text()
                if r.status == 200:
                    for event in await r.json():
                        if event["type"] == "submission_settled":
                            seen.setdefault(event["submissionId"], time.monotonic())
                offset = r.headers["Stream-Next-Offset"]
    return seen


async def kill_and_restart(first: FlueServerProcess, second: FlueServerProcess, persistence: str,
                           tmp_path: Path) -> None:
    async with ScriptedModelServer([echo] * 100) as model:
        make_project(first.root, model.url, persistence)
        admitted: dict[str, list[str]] = defaultdict(list)
        try:
            await first.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                for n in range(PER_INSTANCE):
                    for i in range(INSTANCES):
                        async with http.post(f"{first.url}/agents/echo/i{i}", json={"message": f"i{i} #{n}"}) as r:
                            assert r.status == 202, await r.text()
                            admitted[f"i{i}"].append((await r.json())["submissionId"])
                async with http.post(f"{first.url}/workflows/slow", json={}) as r:
                    assert r.status == 202, await r.text()
                    run_id = (await r.json())["runId"]
                async with asyncio.timeout(20):  # every instance's first prompt is being answered
                    while len(model.requests) < INSTANCES:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                for instance in admitted:
                    assert not await settlements(http, first.url, instance), "settled before the kill"
                first.kill()
                assert await first.wait() == -signal.SIGKILL

                await second.start()
                restarted = time.monotonic()
                seen = await asyncio.gather(*(settled_at(http, second.url, i, PER_INSTANCE) for i in admitted))
                in_flight = [ids[0] for ids in admitted.values()]
                late = {sid: round(at - restarted, 2) for s in seen for sid, at in s.items()
                        if sid in in_flight and at - restarted > WITHIN_S}
                assert not late, f"in-flight work waited for its lease: settled after {late} s"
                async with asyncio.timeout(WITHIN_S):  # the interrupted run is ended too
                    while True:
                        async with http.get(f"{second.url}/runs/{run_id}", params={"offset": "-1"}) as r:
                            if any(e["type"] == "run_end" for e in await r.json()):
                                break
                        await asyncio.sleep(0.1)
                streams = {i: await settlements(http, second.url, i) for i in admitted}
            assert await second.stop() == 0
        except BaseException:
            print(first.output()[-6000:], second.output()[-6000:], sep="\n---\n")
            raise
        finally:
            await first.stop()
            await second.stop()
    for instance, ids in admitted.items():
        settled = streams[instance]
        assert [e["submissionId"] for e in settled] == ids, instance  # each exactly once, in order
        assert all(e["outcome"] == "completed" for e in settled)
        assert [e["result"]["text"] for e in settled] == [f"echo: {instance} #{n}" for n in range(PER_INSTANCE)]
    assert "taking back 4 submission(s) and 1 run(s)" in second.output()


async def test_sigkill_and_restart_on_the_same_port_resumes_at_once(tmp_path: Path) -> None:
    server = FlueServerProcess(tmp_path / "proj")
    await kill_and_restart(server, server, "{kind: sqlite, path: data/state.db}", tmp_path)


async def test_the_same_replica_id_on_another_port_resumes_at_once(tmp_path: Path) -> None:
    env = {"FLUE_REPLICA_ID": "replica-a"}
    first = FlueServerProcess(tmp_path / "proj", env=env)
    second = FlueServerProcess(tmp_path / "proj", env=env, port=free_port())
    await kill_and_restart(first, second, "{kind: sqlite, path: data/state.db}", tmp_path)


async def test_postgres_sigkill_and_restart_resumes_at_once(tmp_path: Path) -> None:
    pytest.importorskip("flue_postgres")
    url, name = await postgres_url(), fresh_schema()
    server = FlueServerProcess(tmp_path / "proj")
    try:
        await kill_and_restart(server, server, f'{{kind: postgres, url: "{url}", schema: {name}}}', tmp_path)
    finally:
        await drop_schema(url, name)


async def test_a_second_live_process_with_the_same_replica_id_refuses_to_start(tmp_path: Path) -> None:
    # a held configured id is waited for during one lease (its holder's host may have died), then refused
    project = make_project(tmp_path / "proj", "http://127.0.0.1:9/v1", "{kind: sqlite, path: data/state.db}",
                           coordinator="{lease: 2, poll: 0.2}")
    env = {"FLUE_REPLICA_ID": "replica-a"}
    first = FlueServerProcess(project, env=env)
    second = FlueServerProcess(project, env=env, ready_timeout=30)
    try:
        await first.start()
        with pytest.raises(RuntimeError, match="exited with 1"):
            await second.start()
        assert "another live process already runs as replica 'replica-a'" in second.output()
        assert "Traceback" not in second.output()
    finally:
        await second.stop()
        await first.stop()


async def test_replica_locks_are_exclusive_and_die_with_their_holder(tmp_path: Path) -> None:
    from flue.persistence.sqlite import SQLiteAdapter

    pairs: list[tuple[Any, Any]] = [(SQLiteAdapter(tmp_path / "s.db"), SQLiteAdapter(tmp_path / "s.db"))]
    url = await reachable_postgres_url()
    if url is not None:  # else SQLite only
        from flue_postgres import PostgresAdapter

        name = fresh_schema()  # the lock needs no tables
        pairs.append((PostgresAdapter(url, schema=name), PostgresAdapter(url, schema=name)))
    for holder, other in pairs:
        try:
            assert await holder.lock_replica("replica-a")
            assert not await other.lock_replica("replica-a")  # a live holder: refused
            assert await other.lock_replica("replica-b")
            await holder.close()  # its process ends: the lock goes with it
            assert await other.lock_replica("replica-a")
        finally:
            await holder.close()
            await other.close()
