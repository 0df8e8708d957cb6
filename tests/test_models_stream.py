"""Assembling streamed chunks into assistant messages."""

from __future__ import annotations

from flue.events import Usage
from flue.models.base import ModelChunk, StreamAccumulator, ToolCallDelta
from flue.models.litellm_provider import merge_thinking_blocks


def test_accumulator_joins_fragments_per_index_and_keeps_the_last_usage():
    acc = StreamAccumulator()
    for chunk in [
        ModelChunk(thinking="Let me "),
        ModelChunk(thinking="check."),
        ModelChunk(text="Checking"),
        ModelChunk(tool_calls=[ToolCallDelta(index=1, id="b", name="time", arguments='{"tz"')]),
        ModelChunk(tool_calls=[ToolCallDelta(index=0, id="a", name="get", arguments="")]),
        ModelChunk(tool_calls=[ToolCallDelta(index=0, arguments='{"city": "Oslo"}')]),
        # some providers repeat the id and name on later fragments: they must not be appended
        ModelChunk(tool_calls=[ToolCallDelta(index=1, id="b", name="time", arguments=': "UTC"}')]),
        ModelChunk(tool_calls=[ToolCallDelta(index=2, arguments="{}")]),  # never named: dropped
        ModelChunk(usage=Usage.of(input=1)),
        ModelChunk(finish_reason="tool_calls", usage=Usage.of(input=5, output=2)),
    ]:
        acc.add(chunk)

    assert acc.usage == Usage.of(input=5, output=2)
    assert acc.finish_reason == "tool_calls"
    assert acc.message() == {
        "role": "assistant",
        "content": "Checking",
        "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get", "arguments": '{"city": "Oslo"}'}},
            {"id": "b", "type": "function", "function": {"name": "time", "arguments": '{"tz": "UTC"}'}},
        ],
        "reasoning_content": "Let me check.",
    }


def test_an_empty_turn_is_a_null_content_message():
    assert StreamAccumulator().message() == {"role": "assistant", "content": None}


def test_thinking_block_fragments_merge_into_signed_blocks():
    blocks: list[dict] = []
    merge_thinking_blocks(blocks, [{"type": "thinking", "thinking": "First "}])
    merge_thinking_blocks(blocks, [{"type": "thinking", "thinking": "thought."}])
    merge_thinking_blocks(blocks, [{"type": "thinking", "thinking": "", "signature": "sig1"}])
    merge_thinking_blocks(blocks, [{"type": "redacted_thinking", "data": "xyz"}])
    merge_thinking_blocks(blocks, [{"type": "thinking", "thinking": "Second."}])
    assert blocks == [
        {"type": "thinking", "thinking": "First thought.", "signature": "sig1"},
        {"type": "redacted_thinking", "data": "xyz"},
        {"type": "thinking", "thinking": "Second."},
    ]
