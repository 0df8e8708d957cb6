"""The collecting hooks run once per loaded project, not once per ``init()`` (flue.registries)."""

from __future__ import annotations

import sys
from pathlib import Path

import flue
from flue.project import load_project

COUNTING_PLUGIN = '''
from collections import Counter

from flue import hookimpl, tool
from flue.testing import ScriptedModel, reply

CALLS = Counter()


@hookimpl
def flue_tools():
    CALLS["flue_tools"] += 1

    @tool
    async def shout(text: str) -> str:
        "Upper-case a text."
        return text.upper()

    return [shout]


@hookimpl
def flue_sandboxes():
    CALLS["flue_sandboxes"] += 1
    return {}


@hookimpl
def flue_model_providers():
    CALLS["flue_model_providers"] += 1
    return {"counted": ScriptedModel([reply(f"answer {i}") for i in range(10)])}


@hookimpl
def flue_channel_kinds():
    CALLS["flue_channel_kinds"] += 1
    return {}
'''


def counting_project(root: Path) -> Path:
    for rel, text in {
        "agents/helper.md": "---\ndescription: helps\nmodel: counted/any\ntools: [shout]\nsandbox: local\n---\nHelp.\n",
        "plugins/counting.py": COUNTING_PLUGIN,
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def calls() -> dict[str, int]:
    return dict(sys.modules["flue_project_plugins.counting"].CALLS)


async def test_plugin_hooks_run_once_per_loaded_project_not_per_init(tmp_path):
    project = load_project(counting_project(tmp_path))
    assert not project.errors, project.errors
    once = {"flue_tools": 1, "flue_sandboxes": 1, "flue_model_providers": 1}
    assert calls() == once  # a project without channels never asks for channel kinds

    answers = []
    for _ in range(3):
        harness = await flue.init("helper", project=project)
        try:
            session = await harness.session()
            answers.append((await session.prompt("hello")).text)
        finally:
            await harness.close()

    assert answers == ["answer 0", "answer 1", "answer 2"]  # one provider object, made once
    assert calls() == once
    assert "shout" in project.registries.tools and "local" in project.registries.sandboxes

    first = sys.modules["flue_project_plugins.counting"]
    load_project(tmp_path)  # loading again (flue dev's reload) imports the plugin afresh, asked once
    assert sys.modules["flue_project_plugins.counting"] is not first
    assert calls() == once


async def test_flue_app_gets_a_runtime_that_satisfies_the_documented_protocol(tmp_path: Path) -> None:
    from flue.runtime.runtime import Runtime

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "a.md").write_text("---\ndescription: d\n---\nHi.\n")
    runtime = await Runtime.open(load_project(tmp_path))
    try:
        assert isinstance(runtime, flue.AppRuntime)
        assert runtime.project.root == tmp_path and runtime.dev is False and runtime.stores is not None
    finally:
        await runtime.close()
