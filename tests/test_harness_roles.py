"""Roles (named instruction preambles; call > session > agent) and skill objects in session.skill()."""

from __future__ import annotations

from pathlib import Path

import pytest
from fixtures.harness.support import FIXTURE_PROJECT, has_virtual_sandbox, make_project

import flue
from flue.testing import ScriptedModel, calls, reply, tool_call


def system_of(request) -> str:
    return next(m["content"] for m in request.messages if m["role"] == "system")


ROLES_AGENT = (
    "---\nmodel: false\ntools: []\nrole: friendly\nroles:\n"
    "  friendly: Speak warmly to {{ agent.name }}'s users.\n"
    "  reviewer: {instructions: Review strictly., thinking: high}\n"
    "  house: {profile: tone}\n"
    "---\nYou are the team assistant.\n"
)


async def test_a_call_role_overrides_the_session_role_which_overrides_the_agent_default(tmp_path):
    project = make_project(tmp_path, files={
        "agents/team.md": ROLES_AGENT,
        "agents/tone.md": "---\ndescription: a tone profile\nthinking: high\n---\nHouse style: plain words, no jargon.\n",
    })
    model = ScriptedModel([reply("a"), reply("b"), reply("c"), reply("d")])
    harness = await flue.init("team", project=project, model=model)

    plain = await harness.session("plain")
    await plain.prompt("hello")  # the agent's default role
    reviewing = await harness.session("review", role="reviewer")
    await reviewing.prompt("check this")  # the session's role
    await reviewing.prompt("and house style", role="house")  # the call's role wins
    await reviewing.prompt("inline", role=flue.Role(instructions="Answer in French."))

    systems = [system_of(r) for r in model.requests]
    assert systems[0].startswith("Speak warmly to team's users.\n\nYou are the team assistant.")
    assert systems[1].startswith("Review strictly.\n\nYou are the team assistant.")
    assert model.requests[1].thinking == "high"  # the role's thinking applies
    assert systems[2].startswith("House style: plain words, no jargon.\n\nYou are the team assistant.")
    assert model.requests[2].thinking == "high"  # from the tone profile
    assert systems[3].startswith("Answer in French.")
    assert all("Review strictly." not in s for s in (systems[0], systems[2], systems[3]))
    # the role changes the instructions, not the history: one conversation per session
    assert [m["content"] for m in reviewing.messages if m["role"] == "user"] == ["check this", "and house style", "inline"]


async def test_a_role_can_bring_its_model_and_unknown_roles_fail_before_anything_runs(tmp_path):
    main, critic = ScriptedModel([reply("from main")]), ScriptedModel([reply("from critic")])
    agent = flue.create_agent(name="duo", model=main, tools=[],
                              roles={"critic": flue.Role(instructions="Be critical.", model=critic)})
    harness = await flue.init(agent)
    session = await harness.session()
    assert (await session.prompt("judge", role="critic")).text == "from critic"
    assert (await session.prompt("plain")).text == "from main"
    with pytest.raises(flue.UnknownRoleError, match="no role 'poet'"):
        await session.prompt("a poem", role="poet")
    with pytest.raises(flue.UnknownRoleError):
        await harness.session("other", role="poet")
    assert len(session.messages) == 4


async def test_a_task_runs_its_child_with_the_callers_role(tmp_path):
    model = ScriptedModel([reply("delegated")])
    agent = flue.create_agent(name="boss", model=model, tools=[], roles={"terse": "One sentence only."})
    session = await (await flue.init(agent)).session()
    assert (await session.task("summarize", role="terse")).text == "delegated"
    assert system_of(model.requests[0]).startswith("One sentence only.")


async def test_role_diagnostics(tmp_path):
    root = tmp_path / "p"
    (root / "agents").mkdir(parents=True)
    (root / "agents" / "a.md").write_text("---\nrole: missing\nroles:\n  x: {profile: nobody}\n---\nHi.\n")
    (root / "agents" / "b.md").write_text("---\nroles:\n  empty: {}\n---\nHi.\n")
    from flue.project import load_project

    errors = load_project(root).errors
    by_file = {(d.file, d.code) for d in errors}
    assert {("agents/a.md", "agent.unknown-role"), ("agents/a.md", "reference.missing-profile")} <= by_file
    (empty,) = [d for d in errors if d.file == "agents/b.md"]
    assert "roles.empty" in empty.message and "needs 'instructions' or a 'profile'" in empty.message


# -- skill objects ------------------------------------------------------------------------


@pytest.mark.skipif(not has_virtual_sandbox(), reason="needs the virtual sandbox (bashkit)")
async def test_session_skill_with_a_registered_skill_object_exposes_its_files():
    review = flue.load_skill(FIXTURE_PROJECT / "skills" / "summarize")
    model = ScriptedModel([
        calls(tool_call("read", {"path": "/workspace/.agents/skills/summarize/CHECKLIST.txt"}, id="r")),
        reply("done"),
    ])
    agent = flue.create_agent(name="reader", model=model, tools=["read"], skills=[review])
    session = await (await flue.init(agent)).session()

    result = await session.skill(review, args={"topic": "tides", "words": 20})
    assert result.text == "done"
    request = model.requests[0].messages[-1]["content"]
    assert "Summarize tides in at most 20 words." in request
    assert "- CHECKLIST.txt: /workspace/.agents/skills/summarize/CHECKLIST.txt" in request
    tool_output = next(m["content"] for m in model.requests[1].messages if m["role"] == "tool")
    assert "Be accurate." in tool_output  # the supporting file is really there


async def test_session_skill_with_an_unregistered_skill_object_runs_its_body_alone():
    review = flue.load_skill(FIXTURE_PROJECT / "skills" / "summarize" / "SKILL.md")
    model = ScriptedModel([reply("ok")])
    session = await (await flue.init(flue.create_agent(name="bare", model=model, tools=[]))).session()
    await session.skill(review, args={"topic": "moons", "words": 5})
    request = model.requests[0].messages[-1]["content"]
    assert "Summarize moons in at most 5 words." in request
    assert "CHECKLIST.txt" not in request.split("Follow")[0] and "Supporting files" not in request


def test_load_skill_resolves_relative_paths_from_the_calling_module_and_reports_problems(tmp_path):
    here = Path(__file__).parent
    assert flue.load_skill("fixtures/harness/project/skills/summarize").directory == str(
        here / "fixtures/harness/project/skills/summarize"
    )
    bad = tmp_path / "Bad_Name"
    bad.mkdir()
    (bad / "SKILL.md").write_text("---\nname: Bad_Name\ndescription: x\n---\nbody\n")
    with pytest.raises(ValueError, match="skill.invalid-name"):
        flue.load_skill(bad)
    with pytest.raises(ValueError, match="no SKILL.md"):
        flue.load_skill(tmp_path)
