"""The harness and its sandbox: shell, fs, AGENTS.md, skills, and the task tool."""

from __future__ import annotations

import pytest
from fixtures.harness.support import has_virtual_sandbox, make_project, recording_sink

import flue
from flue.harness.errors import SandboxUnavailableError, SkillArgumentsError, UnknownSkillError
from flue.testing import ScriptedModel, calls, event_types, reply, tool_call

needs_sandbox = pytest.mark.skipif(not has_virtual_sandbox(), reason="the virtual sandbox is not installed")

WORKSPACE_SKILL = """---
name: release-notes
description: Write release notes from the changelog.
---
Read CHANGELOG.md and write notes.
"""


@needs_sandbox
async def test_system_prompt_has_instructions_agents_md_and_skills(tmp_path):
    project = make_project(tmp_path)
    model = ScriptedModel([reply("ok")])
    agent = flue.create_agent(
        name="writer",
        model=model,
        tools=[],
        instructions="You write.",
        skills=["summarize"],
        files={"AGENTS.md": "Repository rule: never push on Fridays.", ".agents/skills/release-notes/SKILL.md": WORKSPACE_SKILL},
    )
    harness = await flue.init(agent, project=project)
    await (await harness.session()).prompt("hi")

    system = model.requests[0].messages[0]["content"]
    assert system.startswith("You write.")
    assert "Your working directory in the sandbox is /workspace." in system
    assert "Repository rule: never push on Fridays." in system
    assert "- release-notes: Write release notes from the changelog. (/workspace/.agents/skills/release-notes/SKILL.md)" in system
    assert "- summarize: Summarize a topic in a given number of words." in system
    assert sorted(harness.skills) == ["release-notes", "summarize"]
    # The packaged skill's files were written into the sandbox so the model can read them.
    assert await harness.fs.read_file(".agents/skills/summarize/CHECKLIST.txt") == "Be accurate.\nBe brief.\n"
    assert "name: summarize" in await harness.fs.read_file("/workspace/.agents/skills/summarize/SKILL.md")


@needs_sandbox
async def test_skill_renders_its_body_over_args(tmp_path):
    project = make_project(tmp_path)
    model = ScriptedModel([reply("Tides: the moon pulls the sea.")])
    session = await (await flue.init("assistant", project=project, providers={"scripted": model})).session()

    result = await session.skill("summarize", args={"topic": "tides", "words": 8})

    assert result.text == "Tides: the moon pulls the sea." and result.kind == "skill"
    request = model.requests[0].messages[-1]["content"]
    assert request.startswith('Use the skill "summarize" (its files are in /workspace/.agents/skills/summarize)')
    assert "Summarize tides in at most 8 words. Follow CHECKLIST.txt." in request
    assert '"topic": "tides"' in request
    with pytest.raises(SkillArgumentsError, match="'words' is undefined"):
        await session.skill("summarize", args={"topic": "tides"})
    with pytest.raises(UnknownSkillError, match="available: summarize"):
        await session.skill("translate")
    assert len(session.messages) == 2  # the failed operations left no trace


@needs_sandbox
async def test_session_shell_is_recorded_and_harness_shell_is_not(tmp_path):
    model = ScriptedModel([reply("I see the file.")])
    sink, events = recording_sink()
    harness = await flue.init(flue.create_agent(name="sh", model=model, tools=[]), sink=sink)
    session = await harness.session()

    out = await harness.shell("echo setup > setup.txt && cat setup.txt")
    assert (out.stdout, out.exit_code) == ("setup\n", 0)
    assert session.messages == [] and events == []

    res = await session.shell("ls && echo oops >&2 && exit 3")
    assert res.exit_code == 3 and "setup.txt" in res.stdout and "oops" in res.stderr
    transcript = session.messages[-1]
    assert transcript["role"] == "user"
    assert "$ ls && echo oops >&2 && exit 3" in transcript["content"]
    assert "exit code: 3" in transcript["content"] and "setup.txt" in transcript["content"]
    assert [e.type for e in events] == ["operation_start", "operation", "idle"]
    assert events[1].operation_kind == "shell" and events[1].result["exitCode"] == 3 and events[1].usage is None

    await session.prompt("What do you see?")
    assert model.requests[0].messages[-2] == transcript

    await session.fs.write_file("notes/a.txt", "hello")
    assert await harness.fs.exists("/workspace/notes/a.txt")
    assert await session.fs.readdir("notes") == ["a.txt"]


@needs_sandbox
async def test_task_tool_delegates_to_a_subagent_in_a_child_session(tmp_path):
    pytest.importorskip("flue.builtin_tools")
    project = make_project(tmp_path)
    model = ScriptedModel([
        calls(tool_call("task", {"prompt": "Find why the sky is blue.", "agent": "researcher"})),
        reply("Rayleigh scattering."),  # the subagent's turn
        reply("The sky is blue because of Rayleigh scattering."),
    ])
    agent = flue.create_agent(name="lead", model="scripted/lead", tools=["task"], subagents=["researcher"])
    sink, events = recording_sink()
    session = await (await flue.init(agent, project=project, providers={"scripted": model}, sink=sink)).session()

    result = await session.prompt("Why is the sky blue?")

    assert result.text == "The sky is blue because of Rayleigh scattering."
    child_request = model.requests[1]
    assert child_request.model == "profile-model"
    assert child_request.messages[1:] == [{"role": "user", "content": "Find why the sky is blue."}]
    assert model.requests[2].messages[-1]["content"] == "Rayleigh scattering."
    task_start = next(e for e in events if e.type == "task_start")
    child_events = [e for e in events if e.session == f"task:default:{task_start.task_id}"]
    assert {(e.parent_session, e.task_id) for e in child_events} == {("default", task_start.task_id)}
    assert event_types(child_events) == [
        "operation_start", "agent_start", "message_start", "message_end", "turn_start", "turn_request",
        "message_start", "text_delta", "message_end", "turn_messages", "turn", "agent_end", "operation", "idle",
    ]
    done = next(e for e in events if e.type == "task")
    assert done.task_id == task_start.task_id and done.agent == "researcher" and not done.is_error
    assert [m["role"] for m in session.messages] == ["user", "assistant", "tool", "assistant"]


async def test_without_a_sandbox_shell_and_fs_raise_a_clear_error(tmp_path):
    project = make_project(tmp_path, config={"plugins": {"flue.sandbox.plugin": False}})
    model = ScriptedModel([reply("still fine")])
    harness = await flue.init(flue.create_agent(name="nobox", model=model, tools=[]), project=project)
    session = await harness.session()
    assert (await session.prompt("hi")).text == "still fine"
    with pytest.raises(SandboxUnavailableError, match="no plugin registers a sandbox kind"):
        await session.shell("ls")
    with pytest.raises(SandboxUnavailableError):
        await harness.fs.read_file("x")


@needs_sandbox
async def test_a_snapshot_restores_the_sandbox_of_a_new_harness():
    agent = flue.create_agent(name="snap", model=False, tools=[])
    first = await flue.init(agent)
    await first.fs.write_file("state.txt", "kept")
    snapshot = await first.env.snapshot()

    second = await flue.init(agent, snapshot=snapshot)
    assert await second.fs.read_file("state.txt") == "kept"
    fresh = await flue.init(agent)
    assert not await fresh.fs.exists("state.txt")  # one env per init()


async def test_instructions_are_rendered_with_jinja2(tmp_path):
    from datetime import date

    from flue.harness.errors import InstructionsTemplateError

    project = make_project(tmp_path, files={
        "agents/greeter.md": "---\ndescription: Greets people\nmodel: false\ntools: []\n---\n"
                             "You are {{ agent.name }} ({{ agent.description }}), working in {{ cwd }} on {{ date }}.\n"
                             "Answer with {% raw %}{{ name }}{% endraw %} filled in.\n",
    })
    model = ScriptedModel([reply("ok")])
    harness = await flue.init("greeter", project=project, model=model)
    await (await harness.session()).prompt("hi")
    system = model.requests[0].messages[0]["content"]
    assert system.startswith(f"You are greeter (Greets people), working in /workspace on {date.today().isoformat()}.")
    assert "Answer with {{ name }} filled in." in system

    bad = flue.create_agent(name="typo", model=model, tools=[], instructions="Hello {{ agnet.name }}")
    with pytest.raises(InstructionsTemplateError, match="agnet"):
        await flue.init(bad, project=project)


def test_an_undefined_variable_in_instructions_is_a_diagnostic(tmp_path):
    from flue.project import load_project

    root = tmp_path / "p"
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "a.md").write_text("---\ndescription: x\nmodel: false\n---\nHi {{ user }} and {{ agent.name }}\n")
    diags = [d for d in load_project(root).diagnostics if d.code == "template.undefined"]
    assert len(diags) == 1 and diags[0].file == "agents/a.md" and "'user'" in diags[0].message
    assert "agent, cwd, date" in diags[0].hint
