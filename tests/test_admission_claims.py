"""A prompt to an idle instance is claimed by its own admission when the coordinator has room;
otherwise it queues for the claim loop, and every submission still runs once, in order."""

from __future__ import annotations

from pathlib import Path

from fixtures.durability import scripted_project

from flue.project import load_project
from flue.runtime.instances import Coordinator, prompt_input
from flue.runtime.runtime import Runtime
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

AGENT = {"agents/clerk.md": "---\ndescription: answers\n---\nAnswer.\n"}


async def _open(tmp_path: Path, url: str, **options: float) -> tuple[Runtime, Coordinator]:
    root = scripted_project(tmp_path, url, persistence="{kind: sqlite}", files=AGENT)
    runtime = await Runtime.open(load_project(root))
    return runtime, Coordinator(runtime, owner="me", lease_s=5.0, poll_interval=0.05, **options)  # type: ignore[arg-type]


async def test_an_idle_instance_is_claimed_by_its_admission_and_a_busy_one_queues(tmp_path: Path) -> None:
    async with ScriptedModelServer([reply("first"), reply("second")]) as model:
        runtime, coordinator = await _open(tmp_path, model.url)
        await coordinator.start()
        try:
            first, _ = await coordinator.admit("clerk", "i1", prompt_input("one"))
            second, _ = await coordinator.admit("clerk", "i1", prompt_input("two"))
            # the first was the instance's head: running under this coordinator's lease at once
            assert (first.status, first.attempts, first.lease_owner) == ("running", 1, "me")
            assert (second.status, second.attempts, second.lease_owner) == ("queued", 0, None)
            done = [await coordinator.wait(s.submission_id, timeout=20) for s in (first, second)]
        finally:
            await coordinator.stop()
            await runtime.close()
    assert [(d.status, d.attempts, d.result["text"]) for d in done] == [("completed", 1, "first"), ("completed", 1, "second")]
    assert len(model.requests) == 2


async def test_without_room_or_before_start_an_admission_only_queues(tmp_path: Path) -> None:
    async with ScriptedModelServer([reply("a"), reply("b"), reply("c")]) as model:
        runtime, coordinator = await _open(tmp_path, model.url, max_concurrency=1)
        try:
            early, _ = await coordinator.admit("clerk", "i0", prompt_input("before start"))
            assert early.status == "queued"  # a runtime that only admits runs nothing itself
            await coordinator.start()
            done_early = await coordinator.wait(early.submission_id, timeout=20)
            busy, _ = await coordinator.admit("clerk", "i1", prompt_input("takes the one place"))
            other, _ = await coordinator.admit("clerk", "i2", prompt_input("waits for it"))
            assert busy.status == "running" and other.status == "queued"  # concurrency 1: no room for i2
            done = [await coordinator.wait(s.submission_id, timeout=20) for s in (busy, other)]
        finally:
            await coordinator.stop()
            await runtime.close()
    assert done_early.status == "completed"
    assert [d.status for d in done] == ["completed", "completed"]


async def test_a_place_that_comes_free_is_taken_without_waiting_for_a_poll(tmp_path: Path) -> None:
    """Settling i1 leaves i1 nothing queued, so the store need not wake anyone: the coordinator,
    which was full, looks again itself. With a 30 s poll, i2 would otherwise wait that long."""
    async with ScriptedModelServer([reply("a"), reply("b")]) as model:
        root = scripted_project(tmp_path, model.url, persistence="{kind: sqlite}", files=AGENT)
        runtime = await Runtime.open(load_project(root))
        coordinator = Coordinator(runtime, owner="me", lease_s=60.0, poll_interval=30.0, max_concurrency=1)
        await coordinator.start()
        try:
            busy, _ = await coordinator.admit("clerk", "i1", prompt_input("takes the one place"))
            other, _ = await coordinator.admit("clerk", "i2", prompt_input("waits for it"))
            assert busy.status == "running" and other.status == "queued"
            done = [await coordinator.wait(s.submission_id, timeout=10) for s in (busy, other)]
        finally:
            await coordinator.stop()
            await runtime.close()
    assert [d.status for d in done] == ["completed", "completed"]
