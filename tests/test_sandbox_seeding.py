"""The example project's support agent gets its help-center articles in /workspace/articles."""

from __future__ import annotations

from pathlib import Path

from flue.builtin_tools import builtin_tools
from flue.plugins import collect_named
from flue.project import load_project
from flue.sandbox.base import SandboxRequest
from flue.tools import ToolContext

REPO = Path(__file__).resolve().parent.parent


async def test_support_agent_workspace_is_seeded_with_the_articles() -> None:
    project = load_project(REPO)
    assert project.diagnostics == []
    agent = project.agent("support")
    assert agent.sandbox is not None and agent.sandbox.kind == "virtual"
    kinds, _ = collect_named(project.pm, "flue_sandboxes", "sandbox")
    factory = kinds["virtual"][1](agent.sandbox.options, source_root=project.source_root)
    env = await factory.create_session_env(SandboxRequest(id="agents/support/c1/default", cwd=agent.cwd, files=agent.files))

    articles = sorted(p.name for p in (REPO / "sandbox/support/articles").glob("*.md"))
    assert len(articles) >= 3
    assert await env.readdir("/workspace/articles") == articles

    tools, ctx = builtin_tools(), ToolContext(env=env, cwd=env.cwd)
    found = await tools["grep"].execute({"pattern": "429 Too Many Requests"}, ctx)
    assert found.startswith("/workspace/articles/api-rate-limits.md:")
    listed = await tools["glob"].execute({"pattern": "articles/*.md"}, ctx)
    assert listed.splitlines() == [f"/workspace/articles/{name}" for name in articles]
