"""Issue 7: recovery resumes a crashed submission from its journal instead of repeating it.

Two real coordinators share one file-backed SQLite database. The first runs a
prompt whose model (the scripted OpenAI-compatible server, through litellm)
calls tools over two turns, and "dies" (its tasks are cancelled, so it stops
renewing its lease and never settles) while a tool of the second turn is
running. The second coordinator takes the submission over when the lease
expires and replays the journal: finished turns and finished tool calls are
not repeated; only the tool that was in flight runs again.
"""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest
from fixtures.durability import scripted_project

from flue.persistence.base import SessionData, parse_offset
from flue.project import load_project
from flue.runtime.instances import Coordinator, instance_path, prompt_input
from flue.runtime.runtime import Runtime
from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer

PLUGIN = '''
"""Tools whose every execution leaves a line in $FLUE_TEST_DIR, so the test can count runs."""

import asyncio
import os
from pathlib import Path

from flue import hookimpl, tool


def _log(name: str) -> int:
    path = Path(os.environ["FLUE_TEST_DIR"]) / f"{name}.log"
    with path.open("a") as f:
        f.write("ran\\n")
    return len(path.read_text().splitlines())


@hookimpl
def flue_tools():
    @tool
    async def count() -> str:
        "Count how many times this tool has run."
        return f"count ran {_log('count')} time(s)"

    @tool
    async def slow() -> str:
        "Wait until the test releases it."
        runs = _log("slow")
        release = Path(os.environ["FLUE_TEST_DIR"]) / "release"
        for _ in range(600):
            if release.exists():
                return f"slow finished on run {runs}"
            await asyncio.sleep(0.05)
        raise TimeoutError("never released")

    return [count, slow]
'''


def make_project(root: Path, model_url: str) -> Path:
    return scripted_project(root, model_url, persistence="{kind: sqlite, path: state.db}", files={
        "agents/worker.md": "---\ndescription: does the work\ntools: [write, read, count, slow]\n---\nWork.\n",
        "plugins/tools.py": PLUGIN,
    })


async def wait_for(predicate, timeout: float = 20.0, what: str = "condition") -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


async def stream_events(runtime: Runtime, path: str) -> list[dict[str, Any]]:
    out = await runtime.stores.streams.read_events(path, "-1")
    assert parse_offset(out.next_offset) == len(out.events)
    return out.events


@pytest.fixture
def test_dir(tmp_path: Path, monkeypatch) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("FLUE_TEST_DIR", str(work))
    return work


async def test_takeover_replays_finished_turns_and_tools(tmp_path: Path, test_dir: Path) -> None:
    async with ScriptedModelServer() as model:
        model.add(
            calls(tool_call("write", {"path": "/workspace/a.txt", "content": "written once"}, id="w1"),
                  tool_call("count", {}, id="c1")),
            calls(tool_call("count", {}, id="c2"), tool_call("slow", {}, id="s1")),
            reply("all done"),
        )
        project = make_project(tmp_path / "proj", model.url)
        first = await Runtime.open(load_project(project))
        second = await Runtime.open(load_project(project))
        try:
            a = Coordinator(first, owner="coord-a", lease_s=2.0, poll_interval=0.1)
            await a.start()
            sub, _ = await a.admit("worker", "job-1", prompt_input("do the job"))
            # turn 1 is running: count (c2) finished, slow (s1) is in flight
            await wait_for(lambda: _exists(test_dir / "slow.log"), what="the slow tool to start")
            await wait_for(lambda: _lines(test_dir / "count.log", 2), what="count to run twice")
            await a.stop(grace=0)  # the process "dies": no settle, no lease renewal

            crashed = await first.stores.submissions.get(sub.submission_id)
            # (a loaded machine may have let A's own lease lapse and A claim it again: attempts 2)
            assert crashed is not None and crashed.status == "running" and crashed.lease_owner == "coord-a"
            (test_dir / "release").write_text("go")

            b = Coordinator(second, owner="coord-b", lease_s=2.0, poll_interval=0.1)
            await b.start()
            try:
                done = await b.wait(sub.submission_id, timeout=20)
            finally:
                await b.stop()
        finally:
            await first.close()
            await second.close()

        assert done.status == "completed", done.error
        assert done.attempts == crashed.attempts + 1 and done.lease_owner == "coord-b"
        assert done.result["text"] == "all done"
        # three model calls in all: neither turn 0 nor turn 1 asked the model again
        assert len(model.requests) == 3
        # finished tool calls were replayed, not repeated; the one in flight ran again
        assert (test_dir / "count.log").read_text().splitlines() == ["ran", "ran"]
        assert (test_dir / "slow.log").read_text().splitlines() == ["ran", "ran"]
        final_request = model.requests[2]["messages"]
        tool_outputs = {m["tool_call_id"]: m["content"] for m in final_request if m["role"] == "tool"}
        assert tool_outputs["c1"] == "count ran 1 time(s)" and tool_outputs["c2"] == "count ran 2 time(s)"
        assert tool_outputs["s1"] == "slow finished on run 2"
        assert set(tool_outputs) == {"w1", "c1", "c2", "s1"}

        reopened = await Runtime.open(load_project(project))
        try:
            path = instance_path("worker", "job-1")
            events = await stream_events(reopened, path)
            assert [e["type"] for e in events].count("submission_settled") == 1
            resumed = [e["attributes"] for e in events if e["type"] == "log" and e["message"].startswith("resumed")]
            assert len(resumed) == crashed.attempts  # one per attempt after the first
            assert resumed[-1]["turns"] == 1 and resumed[-1]["partialTurn"] is True
            assert resumed[-1]["toolResults"] == 3  # w1, c1 (turn 0) and c2 (turn 1)
            replayed = {e["toolCallId"] for e in events if e["type"] == "tool" and e.get("replayed")}
            assert replayed == {"c2"}
            # the history holds each message once, in order
            history = await reopened.stores.sessions.load(f"{path}/default/default")
            roles = [m["role"] for m in history.messages]
            assert roles == ["user", "assistant", "tool", "tool", "assistant", "tool", "tool", "assistant"]
            assert history.metadata["lastJournal"]["key"] == sub.submission_id
            # the file the first attempt wrote is in the instance's sandbox snapshot
            from flue.harness import init

            snap = await reopened.stores.snapshots.load_snapshot(path)
            harness = await init("worker", project=reopened.project, snapshot=snap, scope=path)
            try:
                assert await harness.fs.read_file("/workspace/a.txt") == "written once"
            finally:
                await harness.close()
        finally:
            await reopened.close()


async def test_a_finished_prompt_whose_settlement_was_lost_is_only_settled(tmp_path: Path, test_dir: Path) -> None:
    async with ScriptedModelServer() as model:
        model.add(reply("the answer"))
        project = make_project(tmp_path / "proj", model.url)
        runtime = await Runtime.open(load_project(project))
        try:
            a = Coordinator(runtime, owner="coord-a", lease_s=1.0, poll_interval=0.1)
            await a.start()
            sub, _ = await a.admit("worker", "job-2", prompt_input("answer me"))
            await a.wait(sub.submission_id, timeout=20)
            await a.stop()
            # The crash window between saving the history and settling: put the
            # submission back to running with an expired lease, as a dead process leaves it.
            await runtime.adapter._execute_for_tests(
                "UPDATE flue_submissions SET status = 'running', lease_owner = 'dead', lease_expires_ms = 0, "
                "settled_ms = NULL, result = NULL WHERE submission_id = ?",
                (sub.submission_id,),
            )
            await runtime.adapter._execute_for_tests(
                "UPDATE flue_instances SET (head_seq, head_ms) = (SELECT seq, accepted_ms FROM flue_submissions "
                "WHERE submission_id = ?) WHERE instance = ?",
                (sub.submission_id, sub.instance),
            )
            b = Coordinator(runtime, owner="coord-b", lease_s=1.0, poll_interval=0.1)
            await b.start()
            try:
                done = await b.wait(sub.submission_id, timeout=20)
            finally:
                await b.stop()
            assert done.status == "completed" and done.lease_owner == "coord-b"
            assert done.result["text"] == "the answer" and "data" not in done.result
            assert done.result["model"] == {"provider": "scripted", "id": "chat"}
            assert len(model.requests) == 1  # the model was not asked again
            history = await runtime.stores.sessions.load(f"{instance_path('worker', 'job-2')}/default/default")
            assert [m["role"] for m in history.messages] == ["user", "assistant"]  # nothing appended twice
        finally:
            await runtime.close()


def _exists(path: Path) -> bool:
    return path.exists()


def _lines(path: Path, n: int) -> bool:
    return path.exists() and len(path.read_text().splitlines()) >= n


async def test_a_submission_past_its_deadline_is_stopped_and_fails(tmp_path: Path, test_dir: Path) -> None:
    async with ScriptedModelServer() as model:
        model.add(reply("thinking very hard", hang=True, hang_timeout=30))
        project = make_project(tmp_path / "proj", model.url)
        (project / "agents" / "slowpoke.md").write_text(
            "---\ndescription: too slow\ntools: []\ndurability: {timeout: 1}\n---\nTake your time.\n"
        )
        runtime = await Runtime.open(load_project(project))
        try:
            coordinator = Coordinator(runtime, owner="coord-a", lease_s=5.0, poll_interval=0.1)
            await coordinator.start()
            try:
                sub, _ = await coordinator.admit("slowpoke", "job-3", prompt_input("go"))
                done = await coordinator.wait(sub.submission_id, timeout=15)
            finally:
                await coordinator.stop()
            assert done.status == "failed" and done.error["type"] == "submission_timeout"
            await wait_for(lambda: model.aborted.is_set(), what="the model stream to be closed")
            events = await stream_events(runtime, instance_path("slowpoke", "job-3"))
            types = [e["type"] for e in events]
            assert types[-3:] == ["operation", "idle", "submission_settled"] and events[-1]["outcome"] == "failed"
            assert events[-1]["error"]["type"] == "submission_timeout"
            assert events[-3]["isError"] and events[-3]["error"]["type"] == "operation_cancelled"
        finally:
            await runtime.close()


async def test_the_last_turns_entry_and_the_session_are_stored_together_and_fenced(
    tmp_path: Path, test_dir: Path
) -> None:
    """The entry of the turn that ends a prompt goes into the session save's transaction: after a
    prompt both are there; a save that fails (the session was deleted meanwhile) stores neither, and
    an attempt that lost the submission while the model answered stores neither either."""
    from flue.runtime.deletion import write_deletion

    async with ScriptedModelServer() as model:
        model.add(reply("the answer"), reply("deleted meanwhile", hang=True, hang_timeout=2.0),
                  reply("too late", hang=True, hang_timeout=2.0))
        project = make_project(tmp_path / "proj", model.url)
        runtime = await Runtime.open(load_project(project))
        store = runtime.stores.submissions
        try:
            a = Coordinator(runtime, owner="coord-a", lease_s=30.0, poll_interval=0.1)
            await a.start()
            done, _ = await a.admit("worker", "job-3", prompt_input("answer me"))
            done = await a.wait(done.submission_id, timeout=20)
            assert done.status == "completed"
            entries = await store.journal(done.submission_id)
            assert [(e["type"], e.get("done")) for e in entries] == [("turn", True)]
            key = f"{instance_path('worker', 'job-3')}/default/default"
            history = await runtime.stores.sessions.load(key)
            assert history.metadata["lastJournal"]["key"] == done.submission_id

            gone, _ = await a.admit("worker", "job-4", prompt_input("answer me"))
            await wait_for(lambda: len(model.requests) == 2, what="the second model call")
            # the deletion marker alone, as another replica writes it (no session here is told)
            await write_deletion(runtime.stores, instance_path("worker", "job-4"),
                                 f"{instance_path('worker', 'job-4')}/default/default")
            gone = await a.wait(gone.submission_id, timeout=20)
            assert gone.status == "failed" and gone.error["type"] == "session_deleted", gone.error
            assert await store.journal(gone.submission_id) == []  # the entry went down with the save

            sub, _ = await a.admit("worker", "job-3", prompt_input("and again"))
            await wait_for(lambda: len(model.requests) == 3, what="the third model call")
            # another coordinator takes the submission over while the model is still answering
            await runtime.adapter._execute_for_tests(
                "UPDATE flue_submissions SET attempts = 2, lease_owner = 'coord-b' WHERE submission_id = ?",
                (sub.submission_id,),
            )
            await wait_for(lambda: sub.submission_id not in a._running, what="the fenced attempt to stop")
            await a.stop()
            assert await store.journal(sub.submission_id) == []
            after = await runtime.stores.sessions.load(key)
            assert after.messages == history.messages  # the fenced attempt saved no history
            fenced = await store.get(sub.submission_id)
            assert fenced.status == "running" and fenced.lease_owner == "coord-b"  # and settled nothing
        finally:
            await runtime.close()


async def test_only_the_prompts_own_session_save_takes_the_last_entry(tmp_path: Path, test_dir: Path) -> None:
    """Another session's save (a task's child session, say) leaves the waiting entry alone;
    an entry no save took is stored by flush()."""
    from flue.runtime.deletion import guard_sessions
    from flue.runtime.instances import SubmissionJournal

    project = make_project(tmp_path / "proj", "http://127.0.0.1:9/v1")
    runtime = await Runtime.open(load_project(project))
    try:
        store = runtime.stores.submissions
        sub, _ = await store.admit("agents/worker/job-5", prompt_input("x"))
        sub = await store.claim_next("me", lease_s=30)
        own = "agents/worker/job-5/default/default"
        sessions = guard_sessions(runtime, sub)
        journal = SubmissionJournal(runtime, sub, [], None, None, session_key=own)
        sessions.journal = journal
        entry = {"type": "turn", "index": 0, "done": True}
        await journal.record(entry)
        assert journal.waits_for(own) and await store.journal(sub.submission_id) == []
        await sessions.save("agents/worker/job-5/default/child", SessionData())
        assert journal.waits_for(own) and await store.journal(sub.submission_id) == []
        await journal.flush()
        assert not journal.waits_for(own) and await store.journal(sub.submission_id) == [entry]
    finally:
        await runtime.close()
