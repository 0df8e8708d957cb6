"""Deleting a session of a durable agent instance while submissions for it are queued or running.

Deletion wins: the history is gone, the queued and the running submission for that
session settle failed with ``session_deleted``, nothing resurrects the history, a
later prompt starts afresh, and a SIGKILL right after the deletion loses none of it.
The model is the scripted OpenAI-compatible server; in the crash test the server is
the real ``flue start`` over file-backed SQLite, with the deletion reached through a
project plugin's route (``flue_app``, where an application puts such endpoints).
"""

from __future__ import annotations

import asyncio
import signal
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
from fixtures.durability import scripted_project
from fixtures.server.support import until

import flue
from flue.persistence.base import SessionData
from flue.project import load_project
from flue.runtime.deletion import GuardedSessions, marker_key, read_marker, session_key
from flue.runtime.instances import prompt_input
from flue.runtime.runtime import Runtime
from flue.testing import ScriptedTurn, reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

DELETE_ROUTE = textwrap.dedent(
    '''
    from aiohttp import web

    import flue


    @flue.hookimpl
    def flue_app(app, runtime):
        async def delete(request):
            m = request.match_info
            await flue.delete_session(m["agent"], id=m["id"], session=m["session"], runtime=runtime)
            return web.Response(status=204)

        app.router.add_post("/test/sessions/{agent}/{id}/{session}/delete", delete)
    '''
)


class Model:
    """Echo every prompt; a prompt containing HANG keeps its stream open, the first time only."""

    def __init__(self) -> None:
        self.hung: set[str] = set()

    def __call__(self, body: dict[str, Any]) -> ScriptedTurn:
        text = next(m for m in reversed(body["messages"]) if m["role"] == "user")["content"]
        if "HANG" in text and text not in self.hung:
            self.hung.add(text)
            return reply("...", hang=True, hang_timeout=30)
        return reply(f"echo: {text}")


def make_project(root: Path, model_url: str, persistence: str) -> Path:
    return scripted_project(root, model_url, persistence=persistence, files={
        "agents/echo.md": "---\ndescription: echoes\nhttp: true\ntools: []\n---\nEcho.\n",
        "plugins/delete_route.py": DELETE_ROUTE,
    })


async def hanging(model: ScriptedModelServer) -> None:
    """Until the model is streaming the HANG prompt's answer."""
    await until(lambda: any("HANG" in " ".join(users(r.body["messages"])) for r in model.records))
    await asyncio.sleep(0.05)  # its stream is open


def users(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"] for m in messages if m["role"] == "user"]


async def test_deleting_a_session_stops_its_running_and_queued_work(tmp_path: Path) -> None:
    async with ScriptedModelServer([Model()] * 20) as model:
        project = load_project(make_project(tmp_path / "proj", model.url, "{kind: sqlite}"))
        runtime = await Runtime.open(project)
        try:
            coordinator = await runtime.start_coordinator()

            async def admit(text: str, session: str = "s1") -> str:
                sub, _ = await coordinator.admit("echo", "u1", prompt_input(text, session=session))
                return sub.submission_id

            first = await coordinator.wait(await admit("remember blue"), timeout=20)
            assert first.status == "completed"
            running, queued = await admit("HANG on s1"), await admit("queued on s1")
            await hanging(model)

            await flue.delete_session("echo", id="u1", session="s1", runtime=runtime)
            stopped = await coordinator.wait(running, timeout=10)
            skipped = await coordinator.wait(queued, timeout=10)
            for sub in (stopped, skipped):
                assert sub.status == "failed"
                assert sub.error is not None and sub.error["type"] == "session_deleted", sub.error
                assert "session 's1' of agents/echo/u1 was deleted" in sub.error["message"]
            await asyncio.wait_for(model.aborted.wait(), 10)  # the running model stream was closed
            key = session_key("agents/echo/u1", "s1")
            assert await runtime.stores.sessions.load(key) is None  # nothing wrote the history back

            fresh = await coordinator.wait(await admit("hello again"), timeout=20)
            assert fresh.status == "completed" and fresh.result["text"] == "echo: hello again"
            assert users(model.requests[-1]["messages"]) == ["hello again"]  # a fresh conversation
            after = await runtime.stores.sessions.load(key)
            assert after is not None and users(after.messages) == ["hello again"]
            assert len(model.requests) == 3  # the queued prompt never reached the model
        finally:
            await runtime.close()


async def test_a_deletion_interrupted_between_its_two_writes_still_hides_the_history(tmp_path: Path) -> None:
    project = load_project(make_project(tmp_path / "proj", "http://127.0.0.1:9/v1", "{kind: sqlite}"))
    runtime = await Runtime.open(project)
    try:
        store = runtime.stores.submissions
        old, _ = await store.admit("agents/echo/u1", prompt_input("old", session="s1"))
        key = session_key("agents/echo/u1", "s1")
        await runtime.stores.sessions.save(key, SessionData(messages=[{"role": "user", "content": "old"}]))
        # the marker was written, then the process died before the history was deleted
        await runtime.stores.sessions.save(marker_key(key), SessionData(metadata={"deletion": {"id": "del_x", "upToSeq": old.seq}}))
        new, _ = await store.admit("agents/echo/u1", prompt_input("new", session="s1"))

        guarded_old = GuardedSessions(runtime, old)
        try:
            await guarded_old.load(key)
            raise AssertionError("an older submission must not open a deleted session")
        except flue.SessionDeletedError:
            pass
        guarded = GuardedSessions(runtime, new)
        assert await guarded.load(key) is None  # the leftover history is not resurrected
        await guarded.save(key, SessionData(messages=[{"role": "user", "content": "new"}]))
        reread = await GuardedSessions(runtime, new).load(key)
        assert reread is not None and users(reread.messages) == ["new"]  # its own write is kept
        # a deletion from elsewhere while it runs: its save fails instead of overwriting the deletion
        await runtime.stores.sessions.save(marker_key(key), SessionData(metadata={"deletion": {"id": "del_y", "upToSeq": new.seq}}))
        try:
            await guarded.save(key, SessionData(messages=[{"role": "user", "content": "late"}]))
            raise AssertionError("a save after a newer deletion must fail")
        except flue.SessionDeletedError as exc:
            assert "while this submission ran" in str(exc)
        assert (await read_marker(runtime.stores.sessions, key))["id"] == "del_y"
    finally:
        await runtime.close()


async def follow(http: aiohttp.ClientSession, url: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Long-poll the instance stream until it holds ``count`` settlements; return all its events."""
    offset, events = "-1", []
    async with asyncio.timeout(timeout):
        while sum(1 for e in events if e["type"] == "submission_settled") < count:
            async with http.get(url, params={"offset": offset, "live": "long-poll"}) as resp:
                assert resp.status in (200, 204), await resp.text()
                if resp.status == 200:
                    events += await resp.json()
                offset = resp.headers["Stream-Next-Offset"]
    return events


async def test_a_deletion_survives_a_sigkill_and_the_queued_submission_fails(tmp_path: Path) -> None:
    async with ScriptedModelServer([Model()] * 20) as model:
        root = make_project(tmp_path / "proj", model.url, "{kind: sqlite, path: data/state.db}")
        async with FlueServerProcess(root) as server, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            url = f"{server.url}/agents/echo/u1"

            async def post(text: str, session: str, wait: bool = False) -> dict[str, Any]:
                params = {"wait": "result"} if wait else {}
                async with http.post(url, params=params, json={"message": text, "session": session}) as resp:
                    assert resp.status in (200, 202), await resp.text()
                    return await resp.json()

            assert (await post("remember blue", "s1", wait=True))["result"]["text"] == "echo: remember blue"
            busy = await post("HANG on other", "other")  # runs (and hangs) ahead of the next one
            queued = await post("queued on s1", "s1")
            await hanging(model)
            async with http.post(f"{server.url}/test/sessions/echo/u1/s1/delete") as resp:
                assert resp.status == 204, await resp.text()
            server.kill()  # right after the deletion, the queued submission still waiting
            assert await server.wait() == -signal.SIGKILL

            await server.start()
            events = await follow(http, url, 3)
            settled = {e["submissionId"]: e for e in events if e["type"] == "submission_settled"}
            assert settled[busy["submissionId"]]["outcome"] == "completed", server.output()  # another session
            failed = settled[queued["submissionId"]]
            assert failed["outcome"] == "failed", (failed, server.output())
            assert failed["error"]["type"] == "session_deleted"
            assert "session 's1' of agents/echo/u1 was deleted" in failed["error"]["message"]
            assert (await post("hello again", "s1", wait=True))["result"]["text"] == "echo: hello again"
            assert await server.stop() == 0

    assert "queued on s1" not in [u for r in model.requests for u in users(r["messages"])]
    assert users(model.requests[-1]["messages"]) == ["hello again"]  # the deleted history stayed deleted
    runtime = await Runtime.open(load_project(root))
    try:
        stored = await runtime.stores.sessions.load(session_key("agents/echo/u1", "s1"))
        assert stored is not None and users(stored.messages) == ["hello again"]
        sub = await runtime.stores.submissions.get(queued["submissionId"])
        assert sub is not None and sub.status == "failed" and sub.error["type"] == "session_deleted"
    finally:
        await runtime.close()
