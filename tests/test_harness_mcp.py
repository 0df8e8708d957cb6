"""MCP servers declared in an agent's frontmatter become tools (mcp__<server>__<tool>).

The server is a real MCP server (the official SDK's MCPServer) in a subprocess
on loopback, over streamable HTTP and over SSE; the model is scripted.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

import pytest
from fixtures.harness.support import make_project

import flue
from flue.harness.mcp import McpConnectionError
from flue.testing import ScriptedModel, calls, reply, tool_call

pytest.importorskip("mcp")
SERVER = Path(__file__).parent / "fixtures" / "mcp" / "demo_server.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(transport: str) -> tuple[asyncio.subprocess.Process, int]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER), transport, str(port),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(20):
        while True:
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return proc, port
            except OSError:
                await asyncio.sleep(0.1)


@pytest.mark.parametrize("transport, path", [("streamable-http", "/mcp"), ("sse", "/sse")])
async def test_mcp_tools_are_offered_and_called(tmp_path, monkeypatch, transport, path):
    proc, port = await start_server(transport)
    try:
        monkeypatch.setenv("FLUE_TEST_TEAM", "core")
        kind = "http" if transport == "streamable-http" else "sse"
        project = make_project(tmp_path, files={
            "agents/mcpuser.md": (
                "---\ndescription: uses MCP\nmodel: false\ntools: []\nmcp:\n"
                f"  demo: {{url: 'http://127.0.0.1:{port}{path}', transport: {kind}, "
                "headers: {X-Team: '${FLUE_TEST_TEAM}'}}\n---\nUse the demo tools.\n"
            ),
        })
        model = ScriptedModel([
            calls(tool_call("mcp__demo__add", {"a": 2, "b": 40}, id="a"),
                  tool_call("mcp__demo__whoami", {}, id="w"),
                  tool_call("mcp__demo__explode", {}, id="x"),
                  tool_call("mcp__demo__add", {"a": "two"}, id="bad")),
            reply("42, core"),
        ])
        harness = await flue.init("mcpuser", project=project, model=model)
        try:
            result = await (await harness.session()).prompt("add and tell me who I am")
        finally:
            await harness.close()
        assert result.text == "42, core"
        offered = {t["function"]["name"] for t in model.requests[0].tools}
        assert {"mcp__demo__add", "mcp__demo__whoami", "mcp__demo__explode"} <= offered
        outputs = {m["tool_call_id"]: m["content"] for m in model.requests[1].messages if m["role"] == "tool"}
        assert outputs["a"] == "42"
        assert outputs["w"] == "core"  # the header reached the server, its ${NAME} filled from the environment
        assert outputs["x"].startswith("Error:") and "explode" in outputs["x"]  # isError comes back as an error
        assert outputs["bad"].startswith("Error: invalid arguments")  # checked against the tool's schema first
    finally:
        proc.terminate()
        await proc.wait()


async def test_an_unreachable_mcp_server_fails_init_with_a_typed_error(tmp_path):
    port = free_port()
    project = make_project(tmp_path, files={
        "agents/lost.md": f"---\ndescription: x\nmodel: false\nmcp:\n  gone: {{url: 'http://127.0.0.1:{port}/mcp'}}\n---\nHi\n",
    })
    with pytest.raises(McpConnectionError, match="MCP server 'gone'"):
        await flue.init("lost", project=project, model=ScriptedModel([]))


async def test_connect_mcp_server_from_code_gives_tools_for_init_and_closes():
    proc, port = await start_server("streamable-http")
    try:
        model = ScriptedModel([
            calls(tool_call("mcp__demo__add", {"a": 20, "b": 22}, id="a"), tool_call("mcp__demo__whoami", {}, id="w")),
            reply("42"),
        ])
        demo = await flue.connect_mcp_server("demo", url=f"http://127.0.0.1:{port}/mcp", headers={"X-Team": "runtime"})
        try:
            assert {"mcp__demo__add", "mcp__demo__whoami", "mcp__demo__explode"} <= {t.name for t in demo.tools}
            harness = await flue.init(flue.create_agent(name="coder", model=model, tools=[]), tools=demo.tools)
            assert (await (await harness.session()).prompt("add")).text == "42"
        finally:
            await demo.close()
        outputs = {m["tool_call_id"]: m["content"] for m in model.requests[1].messages if m["role"] == "tool"}
        assert outputs == {"a": "42", "w": "runtime"}  # headers as given (no ${NAME} filling from code)

        # a closed connection's tools fail cleanly; the async-with form closes on exit
        add = next(t for t in demo.tools if t.name == "mcp__demo__add")
        with pytest.raises(flue.ToolError, match="no longer connected"):
            await add.execute({"a": 1, "b": 2}, flue.ToolContext())
        async with flue.connect_mcp_server("demo", url=f"http://127.0.0.1:{port}/mcp", transport="http") as again:
            add = next(t for t in again.tools if t.name == "mcp__demo__add")
            assert await add.execute({"a": 1, "b": 2}, flue.ToolContext()) == "3"
        with pytest.raises(flue.ToolError):
            await add.execute({"a": 1, "b": 2}, flue.ToolContext())
    finally:
        proc.terminate()
        await proc.wait()
    with pytest.raises(ValueError, match="transport"):
        flue.connect_mcp_server("x", url="http://127.0.0.1:1/mcp", transport="stdio")
    with pytest.raises(McpConnectionError, match="MCP server 'gone'"):
        await flue.connect_mcp_server("gone", url=f"http://127.0.0.1:{free_port()}/mcp")
