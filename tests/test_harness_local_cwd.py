"""``sandbox: local`` without ``cwd``: the process's directory, and nothing written into it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fixtures.harness.support import has_virtual_sandbox, make_project

import flue
from flue.testing import ScriptedModel, calls, reply, tool_call


async def test_local_sandbox_without_cwd_uses_the_process_directory(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    host = tmp_path / "host"
    host.mkdir()
    (host / "notes.txt").write_text("from the host\n")
    monkeypatch.chdir(host)
    model = ScriptedModel([calls(tool_call("bash", {"command": "pwd && cat notes.txt"}, id="c1")), reply("done")])
    agent = flue.create_agent(name="host", model=model, tools=["bash", "read"], sandbox="local", skills=["summarize"])

    harness = await flue.init(agent, project=project)
    try:
        assert harness.cwd == str(host) == harness.env.cwd
        result = await (await harness.session()).prompt("where are you?")
        assert result.text == "done"
        tool_out = next(m for m in model.requests[1].messages if m["role"] == "tool")["content"]
        assert tool_out.splitlines()[:2] == [str(host), "from the host"]
        # The packaged skill did not land in the user's directory...
        assert sorted(os.listdir(host)) == ["notes.txt"]
        # ...but the model is told where to read it, and it can.
        skill_path = harness.skills["summarize"].path
        assert skill_path is not None and not skill_path.startswith(str(host))
        assert f"- summarize: Summarize a topic in a given number of words. ({skill_path})" in harness.system_prompt
        assert "name: summarize" in await harness.env.read_file(skill_path)
        checklist = os.path.join(os.path.dirname(skill_path), "CHECKLIST.txt")
        assert await harness.env.read_file(checklist) == "Be accurate.\nBe brief.\n"
    finally:
        await harness.close()
    # close() removes the temporary skill folder and is idempotent.
    assert not Path(skill_path).parent.exists()
    await harness.close()


@pytest.mark.skipif(not has_virtual_sandbox(), reason="the virtual sandbox is not installed")
async def test_virtual_sandbox_still_defaults_to_workspace_and_local_honours_an_explicit_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    virtual = await flue.init(flue.create_agent(name="v", model=False))
    assert virtual.cwd == "/workspace"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    local = await flue.init(flue.create_agent(name="l", model=False, sandbox="local", cwd="elsewhere"))
    assert local.cwd == str(elsewhere)
    assert (await local.shell("pwd")).stdout.strip() == str(elsewhere)
    await virtual.close()
    await local.close()
