"""The built-in tools, called the way the harness calls them: validate, then execute with a ToolContext."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flue.builtin_tools import (
    BASH_MAX_CHARS,
    DEFAULT_TOOLS,
    GLOB_MAX_RESULTS,
    GREP_DEFAULT_LIMIT,
    READ_MAX_BYTES,
    READ_MAX_LINES,
    builtin_tools,
)
from flue.sandbox.base import SandboxRequest
from flue.sandbox.local import make_local_factory
from flue.sandbox.virtual import make_virtual_factory
from flue.tools import BUILTIN_TOOL_NAMES, ToolContext, ToolError


class Model:
    """Calls tools as a model would and gets back what the model would see."""

    def __init__(self, ctx: ToolContext) -> None:
        self.ctx = ctx
        self.tools = builtin_tools()

    async def __call__(self, name: str, **args: Any) -> str:
        tool = self.tools[name]
        return await tool.execute(tool.validate(args), self.ctx)

    async def error(self, name: str, **args: Any) -> str:
        with pytest.raises(ToolError) as err:
            await self(name, **args)
        return str(err.value)


@pytest.fixture
async def ctx() -> ToolContext:
    env = await make_virtual_factory({}).create_session_env(SandboxRequest(id="t"))
    return ToolContext(env=env, cwd="/workspace")


@pytest.fixture
def model(ctx: ToolContext) -> Model:
    return Model(ctx)


def test_names_and_defaults() -> None:
    tools = builtin_tools()
    assert tuple(tools) == BUILTIN_TOOL_NAMES == DEFAULT_TOOLS
    for tool in tools.values():
        assert tool.spec()["function"]["parameters"]["type"] == "object"


def test_each_description_states_its_limits() -> None:
    tools = builtin_tools()
    assert "30,000 characters" in tools["bash"].description
    assert f"{READ_MAX_LINES} lines" in tools["read"].description and "50 KB" in tools["read"].description
    assert f"{GREP_DEFAULT_LIMIT} results" in tools["grep"].description
    assert f"{GLOB_MAX_RESULTS} paths" in tools["glob"].description


async def test_write_bash_grep_glob_edit_read_conversation(model: Model) -> None:
    assert await model("write", path="/workspace/a.txt", content="hello flue\nbye\n") == (
        "Created /workspace/a.txt (2 lines, 15 bytes)."
    )
    assert await model("bash", command="cat /workspace/a.txt | tr a-z A-Z") == "HELLO FLUE\nBYE"
    assert await model("grep", pattern="hel+o") == "/workspace/a.txt:1:hello flue"
    assert await model("glob", pattern="**/*.txt") == "/workspace/a.txt"
    edited = await model("edit", path="a.txt", old_string="flue", new_string="python")
    assert edited.startswith("Edited /workspace/a.txt: replaced 1 occurrence.")
    assert "     1\thello python" in edited
    assert await model("read", path="/workspace/a.txt") == "     1\thello python\n     2\tbye"


# -- read -------------------------------------------------------------------


async def test_read_pages_with_offset_and_limit(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("n.txt", "".join(f"line {i}\n" for i in range(1, 11)))
    out = await model("read", path="n.txt", offset=3, limit=2)
    assert out == "     3\tline 3\n     4\tline 4\n[Showing lines 3-4 of 10. Use offset=5 to read more.]"
    assert (await model("read", path="n.txt", offset=10)) == "    10\tline 10"
    assert "past the end" in await model.error("read", path="n.txt", offset=11)


async def test_read_caps_lines_bytes_and_line_length(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("many.txt", "x\n" * (READ_MAX_LINES + 500))
    out = await model("read", path="many.txt")
    assert out.count("\n") == READ_MAX_LINES  # 2000 numbered lines + the marker line
    assert out.endswith(f"[Showing lines 1-{READ_MAX_LINES} of {READ_MAX_LINES + 500}. Use offset={READ_MAX_LINES + 1} to read more.]")

    await ctx.env.write_file("wide.txt", ("y" * 1000 + "\n") * 200)  # 200 KB
    out = await model("read", path="wide.txt")
    body, marker = out.rsplit("\n", 1)
    assert len(body.encode()) <= READ_MAX_BYTES + 200 * 8  # + the number prefixes
    assert marker.startswith("[Showing lines 1-") and "Use offset=" in marker

    await ctx.env.write_file("long.txt", "z" * 5000)
    assert "[line truncated, 5000 characters]" in await model("read", path="long.txt")


async def test_read_special_cases(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("empty.txt", "")
    assert await model("read", path="empty.txt") == "[/workspace/empty.txt is empty]"
    await ctx.env.write_file("img.png", b"\x89PNG\0\0binary")
    assert "binary file" in await model("read", path="img.png")
    assert "does not exist" in await model.error("read", path="missing.txt")
    assert "is a directory" in await model.error("read", path="/workspace")
    await ctx.env.write_file("crlf.txt", "a\r\nb\r\n")
    assert await model("read", path="crlf.txt") == "     1\ta\n     2\tb"


# -- write ------------------------------------------------------------------


async def test_write_requires_reading_an_existing_file_first(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("exists.txt", "old")
    assert "has not been read" in await model.error("write", path="exists.txt", content="new")
    await model("read", path="exists.txt")
    assert await model("write", path="exists.txt", content="new") == "Overwrote /workspace/exists.txt (1 lines, 3 bytes)."
    assert await ctx.env.read_file("exists.txt") == "new"


async def test_write_refuses_a_file_changed_since_it_was_read(model: Model, ctx: ToolContext) -> None:
    await model("write", path="w.txt", content="mine")
    await model("bash", command="echo theirs >> w.txt")
    assert "has changed since" in await model.error("write", path="w.txt", content="clobber")
    await model("read", path="w.txt")
    await model("write", path="w.txt", content="ok now")


async def test_read_state_is_per_session(ctx: ToolContext) -> None:
    await ctx.env.write_file("shared.txt", "v1")
    first, second = Model(ctx), Model(ToolContext(env=ctx.env, cwd=ctx.cwd))
    await first("read", path="shared.txt")
    await first("write", path="shared.txt", content="v2")
    assert "has not been read" in await second.error("write", path="shared.txt", content="v3")


async def test_write_creates_parent_directories(model: Model, ctx: ToolContext) -> None:
    await model("write", path="deep/nested/file.md", content="# hi\n")
    assert await ctx.env.read_file("/workspace/deep/nested/file.md") == "# hi\n"
    assert "is a directory" in await model.error("write", path="deep", content="x")


# -- edit -------------------------------------------------------------------


async def test_edit_needs_a_unique_match_unless_replace_all(model: Model, ctx: ToolContext) -> None:
    await model("write", path="e.py", content="x = 1\ny = 1\nz = 2\n")
    msg = await model.error("edit", path="e.py", old_string="= 1", new_string="= 3")
    assert "occurs 2 times" in msg and "lines 1, 2" in msg and "replace_all" in msg
    out = await model("edit", path="e.py", old_string="= 1", new_string="= 3", replace_all=True)
    assert "replaced 2 occurrences" in out
    assert await ctx.env.read_file("e.py") == "x = 3\ny = 3\nz = 2\n"


async def test_edit_explains_a_missing_match(model: Model) -> None:
    await model("write", path="m.py", content="def handler(event):\n    return event['body']\n")
    msg = await model.error("edit", path="m.py", old_string="def handler(evnt):", new_string="x")
    assert "not found" in msg and "closest line is line 1" in msg and "def handler(event):" in msg
    msg = await model.error("edit", path="m.py", old_string="def handler(event):\n  return", new_string="x")
    assert "matches when whitespace is ignored" in msg


async def test_edit_rules(model: Model, ctx: ToolContext) -> None:
    assert "does not exist" in await model.error("edit", path="none.txt", old_string="a", new_string="b")
    await ctx.env.write_file("unread.txt", "a")
    assert "has not been read" in await model.error("edit", path="unread.txt", old_string="a", new_string="b")
    await model("read", path="unread.txt")
    assert "identical" in await model.error("edit", path="unread.txt", old_string="a", new_string="a")
    assert "invalid arguments" in await model.error("edit", path="unread.txt", old_string="", new_string="b")
    await model("edit", path="unread.txt", old_string="a", new_string="")
    assert await ctx.env.read_file("unread.txt") == ""


async def test_edit_handles_crlf_and_preserves_non_utf8_bytes(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("win.txt", "one\r\ntwo\r\n")
    await model("read", path="win.txt")
    await model("edit", path="win.txt", old_string="one\ntwo", new_string="uno\ndos")
    assert await ctx.env.read_file_bytes("win.txt") == b"uno\r\ndos\r\n"
    await ctx.env.write_file("latin1.txt", b"caf\xe9 = 1\n")
    await model("read", path="latin1.txt")
    await model("edit", path="latin1.txt", old_string="= 1", new_string="= 2")
    assert await ctx.env.read_file_bytes("latin1.txt") == b"caf\xe9 = 2\n"


# -- grep -------------------------------------------------------------------


async def seed_tree(ctx: ToolContext) -> None:
    env = ctx.env
    await env.write_file("docs/guide.md", "Install\nRun the server\nStop the server\n")
    await env.write_file("docs/api/ref.md", "GET /server\n")
    await env.write_file("src/app.py", "SERVER = 'x'\nprint(SERVER)\n")
    await env.write_file(".git/config", "server = hidden\n")
    await env.write_file("node_modules/pkg/index.js", "server\n")


async def test_grep_modes_filters_and_context(model: Model, ctx: ToolContext) -> None:
    await seed_tree(ctx)
    assert await model("grep", pattern="server") == (
        "/workspace/docs/api/ref.md:1:GET /server\n"
        "/workspace/docs/guide.md:2:Run the server\n"
        "/workspace/docs/guide.md:3:Stop the server"
    )
    assert await model("grep", pattern="server", ignore_case=True, output_mode="files_with_matches") == (
        "/workspace/docs/api/ref.md\n/workspace/docs/guide.md\n/workspace/src/app.py"
    )
    assert await model("grep", pattern="server", ignore_case=True, output_mode="count", glob="*.py") == (
        "/workspace/src/app.py:2"
    )
    assert await model("grep", pattern="server", path="docs", glob="api/**/*.md") == "/workspace/docs/api/ref.md:1:GET /server"
    assert await model("grep", pattern="Run", path="docs/guide.md", context=1) == (
        "/workspace/docs/guide.md-1-Install\n/workspace/docs/guide.md:2:Run the server\n/workspace/docs/guide.md-3-Stop the server"
    )
    assert await model("grep", pattern="print(", literal=True) == "/workspace/src/app.py:2:print(SERVER)"


async def test_grep_limits_and_errors(model: Model, ctx: ToolContext) -> None:
    await ctx.env.write_file("big.txt", "match\n" * 300)
    out = await model("grep", pattern="match")
    assert out.count("big.txt:") == GREP_DEFAULT_LIMIT
    assert "[Stopped at 100 results" in out
    assert (await model("grep", pattern="match", limit=3)).count("big.txt:") == 3
    assert "No matches for 'absent'" in await model("grep", pattern="absent")
    assert "invalid regular expression" in await model.error("grep", pattern="(unclosed")
    assert "does not exist" in await model.error("grep", pattern="x", path="nowhere")
    await ctx.env.write_file("wide.txt", "needle" + "x" * 2000)
    assert "[line truncated, 2006 characters]" in await model("grep", pattern="needle", path="wide.txt")


# -- glob -------------------------------------------------------------------


async def test_glob_semantics(model: Model, ctx: ToolContext) -> None:
    await seed_tree(ctx)
    await ctx.env.write_file("top.md", "t")
    await ctx.env.write_file(".github/notes.md", "n")
    assert await model("glob", pattern="*.md") == "/workspace/top.md"
    assert await model("glob", pattern="**/*.md") == (
        "/workspace/.github/notes.md\n/workspace/docs/api/ref.md\n/workspace/docs/guide.md\n/workspace/top.md"
    )
    assert await model("glob", pattern="*.md", path="docs") == "/workspace/docs/guide.md"
    assert await model("glob", pattern="/workspace/docs/**/*.{md,py}") == "/workspace/docs/api/ref.md\n/workspace/docs/guide.md"
    assert await model("glob", pattern="**/index.js") == "No files match '**/index.js' under /workspace."
    assert "does not exist" in await model("glob", pattern="*", path="nowhere")


async def test_glob_caps_results(model: Model, ctx: ToolContext) -> None:
    for i in range(GLOB_MAX_RESULTS + 20):
        await ctx.env.write_file(f"many/f{i:03}.txt", "")
    out = await model("glob", pattern="many/*.txt")
    lines = out.splitlines()
    assert len(lines) == GLOB_MAX_RESULTS + 1
    assert lines[-1] == f"[Showing {GLOB_MAX_RESULTS} of {GLOB_MAX_RESULTS + 20} matching paths; narrow the pattern or path.]"


# -- bash -------------------------------------------------------------------


async def test_bash_output_shape(model: Model) -> None:
    assert await model("bash", command="true") == "(no output)"
    assert await model("bash", command="echo out; echo err >&2; exit 2") == "out\nerr\n[exit code: 2]"
    assert await model("bash", command="pwd") == "/workspace"


async def test_bash_keeps_the_last_30000_characters(model: Model) -> None:
    out = await model("bash", command="seq 1 20000")
    assert out.startswith("[... ") and "earlier characters truncated" in out
    assert out.endswith("\n19999\n20000")
    assert len(out) <= BASH_MAX_CHARS + 100
    assert "\n\n" not in out  # cut at a line boundary


async def test_bash_timeout_is_a_result_and_the_agent_continues(model: Model) -> None:
    out = await model("bash", command="while true; do :; done", timeout=0.5)
    assert out.endswith("[exit code: 124]") and "timed out" in out
    assert await model("bash", command="echo next") == "next"
    assert "invalid arguments" in await model.error("bash", command="x", timeout=10_000)


async def test_tools_need_a_sandbox() -> None:
    model = Model(ToolContext(env=None))
    assert "no sandbox" in await model.error("read", path="a")


async def test_unknown_arguments_are_rejected(model: Model) -> None:
    msg = await model.error("read", path="a", line=3)
    assert "invalid arguments" in msg and "line" in msg


# -- task -------------------------------------------------------------------


class FakeSession:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    async def task(self, prompt: str, **kwargs: Any):
        self.calls.append((prompt, kwargs))

        class Result:
            text = f"done: {prompt}"

        return Result()


async def test_task_delegates_to_the_session(ctx: ToolContext) -> None:
    session = FakeSession()
    ctx.session = session
    model = Model(ctx)
    assert await model("task", prompt="summarize the docs") == "done: summarize the docs"
    assert await model("task", prompt="look", agent="researcher", cwd="docs") == "done: look"
    assert session.calls == [("summarize the docs", {}), ("look", {"agent": "researcher", "cwd": "/workspace/docs"})]
    assert "not available" in await Model(ToolContext(env=ctx.env)).error("task", prompt="x")


def test_task_lists_subagents() -> None:
    task = builtin_tools({"researcher": "Reads files", "critic": None})["task"]
    assert task.parameters["properties"]["agent"]["enum"] == ["critic", "researcher"]
    assert "- researcher: Reads files" in task.description
    with pytest.raises(ToolError):
        task.validate({"prompt": "x", "agent": "stranger"})


# -- the same tools on the host -----------------------------------------------


async def test_tools_work_on_the_local_sandbox(tmp_path: Path) -> None:
    env = await make_local_factory({}).create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))
    model = Model(ToolContext(env=env, cwd=str(tmp_path)))
    await model("write", path="a.txt", content="hello host\n")
    assert await model("bash", command="cat a.txt | tr a-z A-Z") == "HELLO HOST"
    assert await model("grep", pattern="host") == f"{tmp_path}/a.txt:1:hello host"
    assert await model("glob", pattern="*.txt") == f"{tmp_path}/a.txt"
    await model("edit", path="a.txt", old_string="host", new_string="world")
    assert await model("read", path="a.txt") == "     1\thello world"
    assert (tmp_path / "a.txt").read_text() == "hello world\n"
