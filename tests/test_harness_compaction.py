"""Automatic context compaction (flue.harness.compaction) through a real session."""

from __future__ import annotations

from typing import Any

from fixtures.harness.support import make_project, recording_sink

import flue
from flue.harness.compaction import ACK, SUMMARY_SYSTEM, split_point
from flue.testing import ScriptedModel, ScriptedTurn, reply

AGENT = (
    "---\ndescription: talks a lot\nmodel: false\ntools: []\n"
    "compaction: {context_window: 400, threshold: 0.5, keep_recent_tokens: 60}\n---\nBe brief.\n"
)


def answer(body: dict[str, Any]) -> ScriptedTurn:
    messages = body["messages"]
    if messages[0]["content"] == SUMMARY_SYSTEM:
        return reply("SUMMARY: the user described their three pets at length.")
    last = messages[-1]["content"]
    return reply(f"noted ({len(messages)} messages in this request): {last[:12]}")


async def test_old_turns_are_summarized_when_the_window_fills(tmp_path):
    project = make_project(tmp_path, files={"agents/chatty.md": AGENT})
    model = ScriptedModel([answer] * 10)
    sink, events = recording_sink()
    harness = await flue.init("chatty", project=project, model=model, sink=sink)
    session = await harness.session()
    for pet in ("cat", "dog", "parrot"):
        await session.prompt(f"My {pet}: " + "it is a very lovely animal that likes naps. " * 6)

    summary_requests = [r for r in model.requests if r.messages[0]["content"] == SUMMARY_SYSTEM]
    assert len(summary_requests) >= 1
    summarized = summary_requests[0].messages[1]["content"]
    assert "My cat" in summarized  # the oldest exchange went into the summary
    # the request after the compaction carries the summary, not the compacted messages
    after = model.requests[model.requests.index(summary_requests[0]) + 1].messages
    contents = [m.get("content") or "" for m in after]
    assert any(c.startswith("Summary of the earlier conversation") and "three pets" in c for c in contents)
    assert ACK in contents
    assert not any(c.startswith("My cat") for c in contents)
    assert contents[-1].startswith("My ")  # the prompt being answered is always kept

    types = [e.type for e in events]
    first = types.index("compaction_start")
    # the summary's own model turn sits between compaction_start and compaction
    assert types[first:first + 4] == ["compaction_start", "turn_start", "turn", "compaction"]
    assert events[first + 1].purpose == "compaction" and events[first + 2].purpose == "compaction"
    assert "three pets" in events[first + 2].output["content"][0]["text"]
    start, end = events[first], events[first + 3]
    assert start.reason == "threshold" and start.estimated_tokens > 0
    assert end.messages_after <= end.messages_before and not end.is_error
    assert end.usage is not None and end.usage.total_tokens > 0
    # the summary's usage counts in the operation's
    operation = next(e for e in events[first:] if e.type == "operation")
    turns = [e for e in events[first:events.index(operation)] if e.type == "turn"]
    assert operation.usage.total_tokens == sum(t.usage.total_tokens for t in turns)
    # the session keeps the compacted history
    history = session.messages
    assert history[0]["content"].startswith("Summary of the earlier conversation")
    assert history[-1]["role"] == "assistant" and session.metadata["compactions"] >= 1
    await harness.close()


async def test_compaction_false_and_unknown_windows_never_compact(tmp_path):
    project = make_project(tmp_path, files={
        "agents/off.md": AGENT.replace("compaction: {context_window: 400, threshold: 0.5, keep_recent_tokens: 60}",
                                       "compaction: false"),
        "agents/unknown.md": AGENT.replace("compaction: {context_window: 400, threshold: 0.5, keep_recent_tokens: 60}",
                                           "compaction: {threshold: 0.1}"),
    })
    for name in ("off", "unknown"):  # the scripted provider has no context_window(): no window known
        model = ScriptedModel([answer] * 5)
        harness = await flue.init(name, project=project, model=model)
        session = await harness.session()
        for _ in range(3):
            await session.prompt("long " * 200)
        assert not any(r.messages[0]["content"] == SUMMARY_SYSTEM for r in model.requests)
        assert len(session.messages) == 6
        await harness.close()


def test_the_cut_never_separates_tool_calls_from_their_results():
    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "t", "type": "function", "function": {"name": "read", "arguments": "{}"}}]}
    messages = [
        {"role": "user", "content": "a" * 400},
        {"role": "assistant", "content": "b" * 400},
        {"role": "user", "content": "read it"},
        call,
        {"role": "tool", "tool_call_id": "t", "content": "c" * 400},
        {"role": "assistant", "content": "done"},
    ]
    cut = split_point(messages, keep_tokens=110)
    assert cut == 2 and messages[cut]["role"] == "user"
    assert split_point(messages, keep_tokens=10_000) == 0  # everything fits: nothing to compact
