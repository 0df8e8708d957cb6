"""Issue 7: admitted work survives a SIGKILL of the server (file-backed SQLite).

The server is the real ``flue start`` in a subprocess; the model is the
scripted OpenAI-compatible server in this process, answering every prompt
with ``echo: <prompt>`` slowly enough that many prompts are in flight when
the server is killed.
"""

from __future__ import annotations

import asyncio
import signal
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fixtures.durability import scripted_project

from flue.persistence.base import parse_offset
from flue.project import load_project
from flue.runtime.runtime import Runtime
from flue.testing import ScriptedTurn, calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

INSTANCES = 20
PER_INSTANCE = 10


def make_project(root: Path, model_url: str) -> Path:
    return scripted_project(root, model_url, persistence="{kind: sqlite, path: data/state.db}", files={
        "agents/echo.md": "---\ndescription: echoes\nhttp: true\ntools: [write, read]\n---\nEcho.\n",
    })


def echo(body: dict[str, Any]) -> ScriptedTurn:
    last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    return reply(f"echo: {last['content']}", chunk_size=3, delay=0.02)


async def read_stream(http: aiohttp.ClientSession, url: str) -> list[dict[str, Any]]:
    async with http.get(url, params={"offset": "-1"}) as resp:
        assert resp.status == 200, await resp.text()
        events = await resp.json()
        assert parse_offset(resp.headers["Stream-Next-Offset"]) == len(events)  # no gaps, nothing lost
        return events


async def settled_count(http: aiohttp.ClientSession, base: str) -> int:
    total = 0
    for i in range(INSTANCES):
        events = await read_stream(http, f"{base}/agents/echo/i{i}")
        total += sum(1 for e in events if e["type"] == "submission_settled")
    return total


async def follow_until_settled(http: aiohttp.ClientSession, url: str, count: int, timeout: float = 120) -> None:
    """Long-poll the stream until it holds ``count`` settlements (event-driven, no busy polling)."""
    offset, seen = "-1", 0
    async with asyncio.timeout(timeout):
        while seen < count:
            async with http.get(url, params={"offset": offset, "live": "long-poll"}) as resp:
                assert resp.status in (200, 204), await resp.text()
                if resp.status == 200:
                    seen += sum(1 for e in await resp.json() if e["type"] == "submission_settled")
                offset = resp.headers["Stream-Next-Offset"]


@pytest.mark.slow
async def test_sigkill_mid_work_every_submission_settles_once_in_order(tmp_path: Path) -> None:
    async with ScriptedModelServer([echo] * 1000) as model:
        project = make_project(tmp_path / "proj", model.url)
        server = FlueServerProcess(project)
        admitted: dict[str, list[str]] = defaultdict(list)  # instance -> submission ids in admission order
        try:
            await server.start()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

                async def admit_all(i: int) -> None:
                    for n in range(PER_INSTANCE):
                        async with http.post(f"{server.url}/agents/echo/i{i}", json={"message": f"i{i} #{n}"}) as resp:
                            assert resp.status == 202, await resp.text()
                            admitted[f"i{i}"].append((await resp.json())["submissionId"])

                await asyncio.gather(*(admit_all(i) for i in range(INSTANCES)))
                # let the server get well into the work, then kill it mid-flight
                for _ in range(600):
                    if len(model.requests) >= 40:
                        break
                    await asyncio.sleep(0.02)
                before = await settled_count(http, server.url)
                server.kill()
                assert await server.wait() == -signal.SIGKILL
                assert 0 < before < INSTANCES * PER_INSTANCE, f"{before} settled before the kill"

                await server.start()
                await asyncio.gather(
                    *(follow_until_settled(http, f"{server.url}/agents/echo/{i}", PER_INSTANCE) for i in admitted)
                )
                streams = {i: await read_stream(http, f"{server.url}/agents/echo/{i}") for i in admitted}
            assert await server.stop() == 0
        except BaseException:
            print(server.output())
            raise
        finally:
            await server.stop()

    for instance, ids in admitted.items():
        events = streams[instance]
        settled = [e for e in events if e["type"] == "submission_settled"]
        # every submission settled exactly once, completed, in admission order
        assert [e["submissionId"] for e in settled] == ids, instance
        assert all(e["outcome"] == "completed" for e in settled)
        n_of = {sid: n for n, sid in enumerate(ids)}
        assert [e["result"]["text"] for e in settled] == [f"echo: {instance} #{n_of[e['submissionId']]}" for e in settled]
        # every admission is on the stream once, before its settlement
        admissions = [e["submissionId"] for e in events if e["type"] == "submission_admitted"]
        assert admissions == ids
        for sid in ids:
            types = [e["type"] for e in events if e.get("submissionId") == sid]
            assert types[0] == "submission_admitted" and types[-1] == "submission_settled"

    # the store agrees, and each instance's session history is intact: one exchange per prompt, in order
    runtime = await Runtime.open(load_project(project))
    try:
        attempts = []
        for instance, ids in admitted.items():
            subs = await runtime.stores.submissions.list_for_instance(f"agents/echo/{instance}")
            assert [s.submission_id for s in subs] == ids
            assert all(s.status == "completed" for s in subs)
            attempts += [s.attempts for s in subs]
            history = await runtime.stores.sessions.load(f"agents/echo/{instance}/default/default")
            expected = []
            for n in range(PER_INSTANCE):
                expected += [("user", f"{instance} #{n}"), ("assistant", f"echo: {instance} #{n}")]
            assert [(m["role"], m["content"]) for m in history.messages] == expected
        assert max(attempts) == 2  # the prompts in flight at the kill were taken over, once
    finally:
        await runtime.close()


async def test_conversation_and_sandbox_files_survive_a_restart(tmp_path: Path) -> None:
    async with ScriptedModelServer() as model:
        model.add(
            calls(tool_call("write", {"path": "/workspace/notes.txt", "content": "favourite colour: blue"}, id="w")),
            reply("Noted."),
            calls(tool_call("read", {"path": "/workspace/notes.txt"}, id="r")),
            reply("Your favourite colour is blue."),
        )
        project = make_project(tmp_path / "proj", model.url)
        async with FlueServerProcess(project) as server, aiohttp.ClientSession() as http:
            url = f"{server.url}/agents/echo/alice"
            async with http.post(url, params={"wait": "result"}, json={"message": "Remember: I like blue."}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["text"] == "Noted."
            server.kill()
            await server.wait()
            await server.start()
            async with http.post(url, params={"wait": "result"}, json={"message": "What do I like?"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["text"] == "Your favourite colour is blue."

    after_restart = model.requests[2]["messages"]
    contents = [m.get("content") for m in after_restart if m["role"] in ("user", "assistant")]
    assert "Remember: I like blue." in contents and "Noted." in contents  # the earlier turns came back
    read_result = next(m for m in model.requests[3]["messages"] if m["role"] == "tool" and m["tool_call_id"] == "r")
    assert "favourite colour: blue" in read_result["content"]  # the file written before the kill


async def test_flue_start_refuses_a_database_written_by_a_newer_flue(tmp_path: Path) -> None:
    import sqlite3

    from flue.persistence.plugin import open_persistence

    project = make_project(tmp_path / "proj", "http://127.0.0.1:9/v1")
    adapter, _stores = await open_persistence(load_project(project))  # creates and stamps the schema
    await adapter.close()
    with sqlite3.connect(project / "data" / "state.db") as db:
        db.execute("UPDATE flue_meta SET value = '99' WHERE key = 'schema_version'")
    server = FlueServerProcess(project, ready_timeout=30)
    try:
        with pytest.raises(RuntimeError, match="exited with 1"):
            await server.start()
        assert server.proc is not None and server.proc.returncode == 1
        out = server.output()
        assert "written by a newer Flue (schema 99, this Flue knows 1)" in out and "Traceback" not in out
    finally:
        await server.stop()
