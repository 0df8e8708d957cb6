"""The built-in tools and sandboxes end to end: flue.init, the tool loop and a scripted model."""

from __future__ import annotations

from pathlib import Path

import pytest

import flue
from flue.testing import ScriptedModel, calls, reply, tool_call
from flue.tools import BUILTIN_TOOL_NAMES

REPO = Path(__file__).resolve().parent.parent


def tool_results(model: ScriptedModel, request: int) -> list[str]:
    """What the model received as tool results in its ``request``-th call (0-based)."""
    return [m["content"] for m in model.requests[request].messages if m["role"] == "tool"][-2:]


def last_tool_result(model: ScriptedModel, request: int) -> str:
    return [m["content"] for m in model.requests[request].messages if m["role"] == "tool"][-1]


async def test_write_bash_grep_glob_edit_read_through_the_tool_loop() -> None:
    model = ScriptedModel([
        calls(tool_call("write", {"path": "/workspace/a.txt", "content": "hello flue\nsecond line\n"})),
        calls(tool_call("bash", {"command": "cat /workspace/a.txt | tr a-z A-Z"})),
        calls(tool_call("grep", {"pattern": "hello"}), tool_call("glob", {"pattern": "**/*.txt"})),
        calls(tool_call("edit", {"path": "a.txt", "old_string": "flue", "new_string": "python"})),
        calls(tool_call("read", {"path": "a.txt"})),
        reply("The file now greets python."),
    ])
    harness = await flue.init(flue.create_agent(name="worker", model=model))  # tools omitted: the defaults
    result = await (await harness.session()).prompt("Make a file, shout it, find it, fix it, show it.")

    assert result.text == "The file now greets python."
    assert sorted(t["function"]["name"] for t in model.requests[0].tools) == sorted(BUILTIN_TOOL_NAMES)
    assert last_tool_result(model, 1) == "Created /workspace/a.txt (2 lines, 23 bytes)."
    assert last_tool_result(model, 2) == "HELLO FLUE\nSECOND LINE"
    assert tool_results(model, 3) == ["/workspace/a.txt:1:hello flue", "/workspace/a.txt"]
    assert last_tool_result(model, 4).startswith("Edited /workspace/a.txt: replaced 1 occurrence.")
    assert last_tool_result(model, 5) == "     1\thello python\n     2\tsecond line"
    assert await harness.fs.read_file("/workspace/a.txt") == "hello python\nsecond line\n"


async def test_sessions_of_one_harness_share_files_and_a_second_init_is_fresh() -> None:
    model = ScriptedModel([
        calls(tool_call("write", {"path": "notes.md", "content": "from session one\n"})),
        reply("written"),
        calls(tool_call("read", {"path": "/workspace/notes.md"})),
        reply("read it"),
    ])
    agent = flue.create_agent(name="sharer", model=model)
    harness = await flue.init(agent)
    await (await harness.session("one")).prompt("write")
    await (await harness.session("two")).prompt("read")
    assert last_tool_result(model, 3) == "     1\tfrom session one"

    again = await flue.init(agent)
    assert await harness.fs.exists("/workspace/notes.md")
    assert not await again.fs.exists("/workspace/notes.md")


async def test_read_before_write_is_per_session() -> None:
    model = ScriptedModel([
        calls(tool_call("write", {"path": "shared.txt", "content": "v1"})),
        reply("ok"),
        calls(tool_call("write", {"path": "shared.txt", "content": "v2"})),
        reply("refused, I will read first"),
    ])
    harness = await flue.init(flue.create_agent(name="careful", model=model))
    await (await harness.session("one")).prompt("create")
    await (await harness.session("two")).prompt("overwrite")
    assert "has not been read in this session" in last_tool_result(model, 3)
    assert await harness.fs.read_file("shared.txt") == "v1"


async def test_an_endless_command_times_out_with_124_and_the_agent_continues() -> None:
    model = ScriptedModel([
        calls(tool_call("bash", {"command": "while true; do :; done", "timeout": 0.5})),
        calls(tool_call("bash", {"command": "echo recovered"})),
        reply("The loop timed out, then I carried on."),
    ])
    harness = await flue.init(flue.create_agent(name="looper", model=model, tools=["bash"]))
    result = await (await harness.session()).prompt("Run the loop.")

    timed_out = last_tool_result(model, 1)
    assert "timed out after 0.5s" in timed_out and timed_out.endswith("[exit code: 124]")
    assert last_tool_result(model, 2) == "recovered"
    assert result.text == "The loop timed out, then I carried on."


async def test_agent_tools_select_the_builtins() -> None:
    model = ScriptedModel([calls(tool_call("bash", {"command": "ls"})), reply("no bash for me")])
    harness = await flue.init(flue.create_agent(name="reader", model=model, tools=["read", "grep", "glob"]))
    await (await harness.session()).prompt("list files")
    assert [t["function"]["name"] for t in model.requests[0].tools] == ["read", "grep", "glob"]
    assert last_tool_result(model, 1).startswith("Error: there is no tool named 'bash'")


async def test_the_task_tool_delegates_to_a_child_session() -> None:
    model = ScriptedModel([
        calls(tool_call("task", {"prompt": "Count the Markdown files and answer with the number."})),
        calls(tool_call("glob", {"pattern": "**/*.md"})),  # the child's turn
        reply("2"),  # the child's answer
        reply("The subagent counted 2 files."),
    ])
    agent = flue.create_agent(name="lead", model=model, files={"a.md": "a", "docs/b.md": "b"})
    result = await (await (await flue.init(agent)).session()).prompt("How many Markdown files?")
    assert last_tool_result(model, 2) == "/workspace/a.md\n/workspace/docs/b.md"
    assert last_tool_result(model, 3) == "2"
    assert result.text == "The subagent counted 2 files."


async def test_the_local_sandbox_through_init_does_not_leak_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUE_E2E_SECRET", "hunter2")
    model = ScriptedModel([calls(tool_call("bash", {"command": "echo pid=$$; env"})), reply("done")])
    agent = flue.create_agent(
        name="host", model=model, tools=["bash"], sandbox={"kind": "local", "env": {"VISIBLE": "yes"}}, cwd=str(tmp_path)
    )
    harness = await flue.init(agent)
    await (await harness.session()).prompt("show env")
    out = last_tool_result(model, 1)
    assert out.startswith("pid=") and "VISIBLE=yes" in out
    assert "FLUE_E2E_SECRET" not in out and "hunter2" not in out
    assert harness.cwd == str(tmp_path)


async def test_the_example_support_agent_finds_its_articles() -> None:
    from flue.project import load_project

    project = load_project(REPO)
    model = ScriptedModel([
        calls(tool_call("grep", {"pattern": "Retry-After", "output_mode": "files_with_matches"})),
        reply("See the API rate limits article."),
    ])
    harness = await flue.init("support", project=project, model=model)
    result = await (await harness.session()).prompt("I keep getting HTTP 429, what do I do?")
    assert last_tool_result(model, 1) == "/workspace/articles/api-rate-limits.md"
    assert result.text == "See the API rate limits article."
