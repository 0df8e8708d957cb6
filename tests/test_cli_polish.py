"""Issue 13 polish: flue info's tools and long model names, flue init's next steps, dev reloads
that skip editor temp files, and the Python client speaking the wire's names."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path

from conftest import run_flue
from fixtures.server.support import flue_server, scratch_project, served, write_files

from flue.client import FlueClient, FlueClientError
from flue.server.dev import DevServer

pytest_plugins = ["flue.testing.pytest_plugin"]

LONG_MODEL = "anthropic/claude-sonnet-4-6-with-a-model-name-long-enough-to-pass-eighty-columns-20250101"

SHOUT_PLUGIN = '''
from flue import hookimpl, tool


@tool
async def shout(text: str) -> str:
    "Upper-case some text."
    return text.upper()


@hookimpl
def flue_tools():
    return [shout]
'''


def tools_project(root: Path) -> Path:
    return write_files(root, {
        "flue.yaml": f"model: {LONG_MODEL}\n",
        "agents/picky.md": textwrap.dedent("""\
            ---
            description: some tools, a plugin's and an MCP server's
            tools: [bash, shout]
            mcp: {github: {url: "http://127.0.0.1:9/mcp"}}
            ---
            Be brief.
            """),
        "agents/default.md": "---\ndescription: the default tools\n---\nHi.\n",
        "agents/none.md": "---\ndescription: no tools\ntools: []\n---\nHi.\n",
        "agents/child.md": "---\ndescription: picky's tools, by its profile\nprofile: picky\n---\nHi.\n",
        "agents/coded.py": "description = 'built in code'\n\n\ndef init_agent(ctx):\n    return {'tools': []}\n",
        "plugins/shouter.py": SHOUT_PLUGIN,
    })


def test_flue_info_lists_each_agents_tools(tmp_path: Path) -> None:
    root = tools_project(tmp_path)
    proc = run_flue("info", "--json", cwd=root, timeout=60)
    assert proc.returncode == 0, proc.stderr
    tools = {a["name"]: a["tools"] for a in json.loads(proc.stdout)["agents"]}
    assert tools["picky"] == [
        {"name": "bash", "source": "builtin"},
        {"name": "shout", "source": "plugin", "plugin": "shouter"},
        {"name": "mcp__github__*", "source": "mcp"},  # listed from the declaration, never by connecting
    ]
    assert [t["name"] for t in tools["default"]] == ["bash", "read", "write", "edit", "grep", "glob", "task"]
    assert tools["none"] == []
    assert tools["child"] == tools["picky"]  # a profile's tools and MCP servers are the agent's
    assert tools["coded"] == [{"name": "(set by init_agent)", "source": "code"}]

    proc = run_flue("info", cwd=root, timeout=60)  # the readable report, in a pipe
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if line.startswith("picky"))
    assert "bash, shout (plugin), mcp__github__* (mcp)" in row
    assert LONG_MODEL in row and len(row) > 80  # the model name whole, not cut at 80 columns
    assert "\x1b" not in proc.stdout


def test_flue_init_prints_aligned_next_steps(tmp_path: Path) -> None:
    proc = run_flue("init", "my app", cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == "flue init: a Flue project is ready in my app:"
    assert "  flue.yaml" in lines and "  workflows/hello.py" in lines
    steps = lines[lines.index("Next:") + 1:]
    commands = [s.split("  #")[0].strip() for s in steps]
    assert commands[0] == "cd 'my app'" and "flue info" in commands
    assert "flue run hello --payload '{\"name\": \"Ada\"}'" in commands
    assert len({s.index("  #") for s in steps}) == 1  # the comments line up
    # the next command works: the scaffold's workflow exists under that name
    info = run_flue("info", "--json", cwd=tmp_path / "my app", timeout=60)
    assert "hello" in [w["name"] for w in json.loads(info.stdout)["workflows"]]
    # in the project itself: no "cd"
    again = run_flue("init", ".", "--force", cwd=tmp_path / "my app", timeout=60)
    assert "in the current directory" in again.stderr and "cd " not in again.stderr


def test_dev_reload_ignores_editor_temp_files(tmp_path: Path) -> None:
    root = write_files(tmp_path, {"agents/a.md": "---\ndescription: a\n---\nHi.\n"})
    dev = DevServer(root)
    agents = root / "agents"
    for name in ("4913", ".a.md.swp", ".a.md.swx", "a.md~", ".#a.md", "#a.md#", "a.md.bak", "a.md.tmp"):
        assert not dev.relevant(str(agents / name)), name
    assert dev.relevant(str(agents / "a.md")) and dev.relevant(str(root / "flue.yaml"))


async def test_flue_dev_reload_message_names_only_the_real_change(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9")
    agent = root / "agents" / "assistant.md"
    async with flue_server("dev", cwd=root) as dev:
        # the watcher starts just after the URL is printed: edit until a reload shows it is watching
        async with asyncio.timeout(15):
            while not any("flue dev: reloaded" in x for x in dev.lines):
                agent.write_text(agent.read_text() + "\n")
                await asyncio.sleep(0.3)
        await asyncio.sleep(0.5)  # let the warm-up's reloads settle
        mark = len(dev.lines)
        for temp in ("4913", ".assistant.md.swp", "assistant.md~"):  # what vim writes around a save
            (agent.parent / temp).write_text("x")
        agent.write_text("---\ndescription: edited\nhttp: true\ntools: []\n---\nTerse.\n")
        await dev.wait_for_line(r"flue dev: reloaded", after=mark)
        changed = [x for x in dev.lines[mark:] if "changed:" in x]
        assert changed == ["flue dev: changed: agents/assistant.md; reloading"], dev.output


async def test_client_reads_wire_names_and_shows_error_details(tmp_path: Path, scripted_model_server) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root, dev=True) as srv, FlueClient(srv.base) as flue:
        run = await flue.workflows.invoke("echo", {"x": 1}, wait="result")
        assert run.runId == run.run_id and run.streamUrl == run.stream_url
        record = await flue.runs.get(run.runId)
        assert record.workflowName == record.workflow_name == "echo" and record.runId == run.run_id
        admitted = await flue.workflows.invoke("echo", {})
        assert admitted.runId.startswith("run_")
        try:
            await flue.workflows.invoke("private", {})
        except FlueClientError as exc:
            text = repr(exc)
        assert text.startswith("FlueClientError(status=404, type='workflow_not_found', message=")
        assert "details='Verify the workflow name is correct.'" in text
        assert re.search(r"dev='Workflow \"private\" exists .* add `http = True`", text)


def test_readme_in_process_example_runs(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import REPO

    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python, in process"):]
    start = section.index("```python\n") + len("```python\n")
    code = section[start:section.index("\n```", start)]
    env = {k: v for k, v in os.environ.items() if k != "FLUE_MODEL"}
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "Hello, Ada! It is a real pleasure to meet you.\n"


def test_connect_tells_a_failed_prompt_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = write_files(tmp_path, {"flue.yaml": "model: anthropic/claude-sonnet-4-6\n",
                                  "agents/a.md": "---\ndescription: x\ntools: []\n---\nHi.\n"})
    env = {k: v for k, v in os.environ.items() if k not in ("ANTHROPIC_API_KEY", "FLUE_MODEL")}
    proc = subprocess.run([sys.executable, "-m", "flue", "connect", "a", "x"], cwd=root, env=env, input="hi\n",
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("ANTHROPIC_API_KEY is not set") == 1, proc.stderr
    assert re.fullmatch(r"✘ failed after \d+\.\d\ds", proc.stderr.splitlines()[-1])
    assert proc.stdout == ""
