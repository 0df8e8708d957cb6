"""Sandboxes chosen by an agent file's frontmatter, end to end through flue.init and the tool loop:
a plugin's sandbox kind with options, a virtual workspace folder, and the local host directory."""

from __future__ import annotations

from pathlib import Path

from fixtures.harness.support import make_project

import flue
from flue.testing import ScriptedModel, calls, reply, tool_call

TAGGED_PLUGIN = '''
"""A third-party sandbox kind: a virtual sandbox that remembers who asked for it."""
from flue import hookimpl

REQUESTS = []


def make_tagged(options, source_root=None):
    from flue.sandbox.virtual import make_virtual_factory

    tag = options.pop("tag")
    inner = make_virtual_factory(options, source_root=source_root)

    class Tagged:
        async def create_session_env(self, request):
            REQUESTS.append((request.id, tag, dict(request.options)))
            request.files = {**request.files, "TAG.txt": tag}
            return await inner.create_session_env(request)

    return Tagged()


@hookimpl
def flue_sandboxes():
    return {"tagged": make_tagged}
'''


def tool_result(model: ScriptedModel, request: int) -> str:
    return [m["content"] for m in model.requests[request].messages if m["role"] == "tool"][-1]


async def test_a_plugin_sandbox_kind_is_selected_by_frontmatter_with_its_options(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        files={
            "plugins/tagged.py": TAGGED_PLUGIN,
            "agents/boxed.md": "---\ndescription: x\ntools: [bash]\nsandbox: {kind: tagged, tag: blue}\n---\nx\n",
        },
    )
    plugin = project.pm.get_plugin("tagged")
    model = ScriptedModel([calls(tool_call("bash", {"command": "pwd; cat TAG.txt"})), reply("blue")])

    harness = await flue.init("boxed", project=project, model=model, scope="agents/boxed/c1")
    await (await harness.session()).prompt("which tag?")

    assert plugin.REQUESTS == [("agents/boxed/c1/default", "blue", {"tag": "blue"})]
    assert tool_result(model, 1) == "/workspace\nblue"
    # One env per init(): a second init asks the plugin again.
    await flue.init("boxed", project=project, model=model, scope="agents/boxed/c2")
    assert [r[0] for r in plugin.REQUESTS] == ["agents/boxed/c1/default", "agents/boxed/c2/default"]


async def test_a_virtual_workspace_folder_brings_agents_md_and_its_skills_into_the_prompt(tmp_path: Path) -> None:
    project = make_project(
        tmp_path,
        files={
            "ws/AGENTS.md": "Deploys happen on Tuesdays only.\n",
            "ws/.agents/skills/tidy/SKILL.md": "---\nname: tidy\ndescription: Tidy one file\n---\nTidy {{ path }} now.\n",
            "ws/src/app.py": "print('hi')\n",
            "agents/ops.md": "---\ndescription: x\ntools: [read]\nsandbox: {kind: virtual, workspace: ws}\n---\nYou run ops.\n",
        },
    )
    model = ScriptedModel([reply("Tuesday."), reply("Tidied.")])
    harness = await flue.init("ops", project=project, model=model)
    session = await harness.session()

    await session.prompt("When do we deploy?")
    system = model.requests[0].messages[0]["content"]
    assert system.startswith("You run ops.")
    assert "Deploys happen on Tuesdays only." in system
    assert "- tidy: Tidy one file (/workspace/.agents/skills/tidy/SKILL.md)" in system
    assert await harness.fs.read_file("src/app.py") == "print('hi')\n"

    await session.skill("tidy", args={"path": "src/app.py"})
    assert "Tidy src/app.py now." in model.requests[1].messages[-1]["content"]
    # The project folder itself is untouched by the sandbox.
    await harness.fs.write_file("src/app.py", "changed")
    assert (project.root / "ws/src/app.py").read_text() == "print('hi')\n"


async def test_sandbox_local_in_frontmatter_reads_the_host_directory(tmp_path: Path) -> None:
    host = tmp_path / "checkout"
    (host / ".agents/skills/lint").mkdir(parents=True)
    (host / "AGENTS.md").write_text("Run the linter before committing.\n")
    (host / ".agents/skills/lint/SKILL.md").write_text("---\nname: lint\ndescription: Lint the checkout\n---\nLint.\n")
    project = make_project(
        tmp_path,
        files={"agents/hostie.md": f"---\ndescription: x\ntools: [bash]\nsandbox: local\ncwd: {host}\n---\nHost work.\n"},
    )
    model = ScriptedModel([calls(tool_call("bash", {"command": "pwd && echo made > out.txt"})), reply("done")])
    harness = await flue.init("hostie", project=project, model=model)
    try:
        await (await harness.session()).prompt("go")
    finally:
        await harness.close()

    system = model.requests[0].messages[0]["content"]
    assert "Run the linter before committing." in system
    assert f"- lint: Lint the checkout ({host}/.agents/skills/lint/SKILL.md)" in system
    assert tool_result(model, 1) == str(host)
    assert (host / "out.txt").read_text() == "made\n"  # a real process on the host
