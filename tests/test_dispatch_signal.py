"""Structured dispatch input reaches the model as Flue's ``dispatch_input`` signal (reference 5.6)."""

from __future__ import annotations

from pathlib import Path

from fixtures.durability import scripted_project

from flue.project import load_project
from flue.runtime.instances import Coordinator
from flue.runtime.runtime import Runtime
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer


async def test_json_dispatch_input_is_a_dispatch_signal_with_sorted_escaped_json(tmp_path: Path) -> None:
    async with ScriptedModelServer([reply("noted")]) as model:
        root = scripted_project(tmp_path, model.url, persistence="{kind: sqlite}", files={
            "agents/clerk.md": "---\ndescription: files orders\n---\nFile orders.\n"})
        runtime = await Runtime.open(load_project(root))
        coordinator = Coordinator(runtime, owner="test", lease_s=5.0, poll_interval=0.05)
        await coordinator.start()
        try:
            sub, _ = await coordinator.admit("clerk", "shop-1", {"order": 7, "note": "a <b> & c"},
                                             kind="dispatch", dispatch_id="dsp-1")
            done = await coordinator.wait(sub.submission_id, timeout=20)
        finally:
            await coordinator.stop()
            await runtime.close()
    assert done.status == "completed"
    (request,) = model.requests
    user = [m for m in request["messages"] if m["role"] == "user"][-1]
    text = user["content"] if isinstance(user["content"], str) else user["content"][0]["text"]
    assert text == (
        f'<dispatch type="dispatch_input" agent="clerk" id="shop-1" session="default" dispatchId="dsp-1" '
        f'acceptedAt="{sub.accepted_at}">\n{{\n  "note": "a &lt;b&gt; &amp; c",\n  "order": 7\n}}\n</dispatch>'
    )
