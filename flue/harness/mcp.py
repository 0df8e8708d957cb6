"""MCP servers as tools (the official ``mcp`` SDK, the ``flue[mcp]`` extra).

An agent declares servers in its frontmatter::

    mcp:
      github:
        url: https://mcp.example.com/mcp
        transport: http                # streamable HTTP (default) or sse
        headers: {Authorization: "Bearer ${GITHUB_TOKEN}"}   # ${NAME}: from the environment

At ``init()`` the harness connects to each server once, lists its tools and
offers every one of them to the model as ``mcp__<server>__<tool>`` (declaring
the server is the opt-in; ``tools:`` lists only built-in and plugin tools).
Arguments are validated against the tool's input schema before the call; a
result with ``isError`` comes back to the model as an error result.
``harness.close()`` closes the connections.

From code, for servers chosen at run time (Flue's ``connectMcpServer``)::

    github = await flue.connect_mcp_server(
        "github", url="https://mcp.example.com/mcp", headers={"Authorization": f"Bearer {token}"},
    )
    try:
        harness = await flue.init(agent, tools=github.tools)
        ...
    finally:
        await github.close()

    async with flue.connect_mcp_server("github", url=...) as github:   # the same, closed on exit
        ...

``transport`` is ``"http"`` (streamable HTTP, the default; ``"streamable-http"``
is accepted too) or ``"sse"`` for legacy servers. Flue neither spawns stdio
servers nor handles OAuth. Tool names are ``mcp__<server>__<tool>`` with
every character outside ``[A-Za-z0-9_-]`` replaced by ``_`` (two tools that
end up with one name fail the connection).

Each connection lives in a task of its own: the SDK's transports are anyio
task groups, which must be entered and left by the same task, while a
harness may be created and closed by different ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Generator
from typing import Any

from flue.harness.errors import FlueHarnessError
from flue.tools import Tool, ToolContext, ToolError

PREFIX = "mcp__"
CONNECT_TIMEOUT_S = 30.0


class McpConnectionError(FlueHarnessError):
    def __init__(self, server: str, url: str, problem: str):
        super().__init__(f"MCP server '{server}' ({url}) could not be used: {problem}")


class McpConnection:
    """One open MCP client, owned by a background task."""

    def __init__(self, name: str, url: str, transport: str, headers: dict[str, str]):
        self.name, self.url, self.transport, self.headers = name, url, transport, headers
        self.client: Any = None
        self._ready: asyncio.Future[None] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._ready = loop.create_future()
        self._task = loop.create_task(self._hold(), name=f"flue-mcp-{self.name}")
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), CONNECT_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise

    async def _hold(self) -> None:
        assert self._ready is not None
        try:
            from mcp import Client
        except ModuleNotFoundError:
            self._ready.set_exception(McpConnectionError(self.name, self.url, "the mcp SDK is not installed "
                                                         "(pip install 'flue[mcp]')"))
            return
        http: Any = None
        try:
            if self.transport == "sse":
                from mcp.client.sse import sse_client

                target: Any = sse_client(self.url, headers=self.headers or None)
            else:
                from mcp.client.streamable_http import streamable_http_client
                from mcp.shared._httpx_utils import create_mcp_http_client

                http = create_mcp_http_client(headers=self.headers or None)
                target = streamable_http_client(self.url, http_client=http)
            async with Client(target) as client:
                self.client = client
                self._ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            if not self._ready.done():
                problem = _describe(exc)
                self._ready.set_exception(McpConnectionError(self.name, self.url, problem))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.client = None
            if http is not None:
                with contextlib.suppress(Exception):
                    await http.aclose()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), 5.0)
            except Exception:  # did not stop in time (or failed while stopping)
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task

    async def tools(self) -> list[Tool]:
        listed = await self.client.list_tools()
        tools = [self._adapt(t) for t in listed.tools]
        names = [t.name for t in tools]
        for name in names:
            if names.count(name) > 1:
                raise McpConnectionError(self.name, self.url, f"two of its tools are both named '{name}' once adapted")
        return tools

    def _adapt(self, spec: Any) -> Tool:
        remote = spec.name
        schema = dict(getattr(spec, "input_schema", None) or getattr(spec, "inputSchema", None) or {})
        schema.setdefault("type", "object")
        if schema.get("type") != "object":
            schema = {"type": "object", "properties": {}}

        async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
            if self.client is None:
                raise ToolError(f"the MCP server '{self.name}' is no longer connected")
            try:
                result = await self.client.call_tool(remote, args)
            except Exception as exc:
                raise ToolError(f"MCP server '{self.name}' failed on {remote}: {_describe(exc)}") from None
            text = _result_text(result)
            if getattr(result, "is_error", False) or getattr(result, "isError", False):
                raise ToolError(text or f"{remote} failed")
            return text

        return Tool(name=f"{PREFIX}{_safe(self.name)}__{_safe(remote)}", description=spec.description or remote,
                    parameters=schema, execute=execute)


def _safe(part: str) -> str:
    """A name part as tool names allow it (Flue's sanitization)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", part).strip("_") or "unnamed"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _result_text(result: Any) -> str:
    """What the model reads: the text parts, else the structured content as JSON."""
    parts = [getattr(c, "text", None) for c in getattr(result, "content", None) or []]
    texts = [p for p in parts if isinstance(p, str)]
    if texts:
        return "\n".join(texts)
    structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    return json.dumps(structured, ensure_ascii=False, default=str) if structured is not None else ""


async def connect_servers(
    servers: dict[str, Any], *, interpolate: bool = True
) -> tuple[list[McpConnection], list[Tool]]:
    """Open every declared server; on any failure close what was opened and raise.
    ``interpolate``: fill ``${NAME}`` in headers from the environment (agent files)."""
    from flue.config import MissingEnvVar, interpolate_env

    opened: list[McpConnection] = []
    tools: list[Tool] = []
    try:
        for name, raw in servers.items():
            spec = raw.model_dump() if hasattr(raw, "model_dump") else dict(raw)
            headers = dict(spec.get("headers") or {})
            try:
                if interpolate:
                    headers = interpolate_env(headers, path=f"mcp.{name}.headers")
            except MissingEnvVar as exc:
                raise McpConnectionError(name, spec["url"], str(exc)) from None
            conn = McpConnection(name, spec["url"], spec.get("transport") or "http", headers)
            await conn.open()
            opened.append(conn)
            try:
                tools += await conn.tools()
            except Exception as exc:
                raise McpConnectionError(name, conn.url, f"listing its tools failed: {_describe(exc)}") from None
    except BaseException:
        for conn in opened:
            await conn.close()
        raise
    return opened, tools


class McpServerConnection:
    """An open MCP server: ``tools`` to pass to ``init(tools=...)`` or a call's ``tools=``;
    ``close()`` (or leave its ``async with``) when done."""

    def __init__(self, connection: McpConnection, tools: list[Tool]):
        self._connection = connection
        self.name = connection.name
        self.url = connection.url
        self.tools = tools

    def __repr__(self) -> str:
        return f"<McpServerConnection {self.name!r} {self.url} tools={[t.name for t in self.tools]}>"

    async def close(self) -> None:
        """Close the connection (idempotent); its tools fail with an error result afterwards."""
        await self._connection.close()

    async def __aenter__(self) -> McpServerConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class _Connecting:
    """``await connect_mcp_server(...)`` or ``async with connect_mcp_server(...) as server``."""

    def __init__(self, name: str, spec: dict[str, Any]):
        self._name, self._spec = name, spec
        self._connection: McpServerConnection | None = None

    async def _open(self) -> McpServerConnection:
        (conn,), tools = await connect_servers({self._name: self._spec}, interpolate=False)
        return McpServerConnection(conn, tools)

    def __await__(self) -> Generator[Any, None, McpServerConnection]:
        return self._open().__await__()

    async def __aenter__(self) -> McpServerConnection:
        self._connection = await self._open()
        return self._connection

    async def __aexit__(self, *exc: object) -> None:
        if self._connection is not None:
            await self._connection.close()


def connect_mcp_server(
    name: str, *, url: str, headers: dict[str, str] | None = None, transport: str = "http",
) -> _Connecting:
    """Connect to a remote MCP server and adapt its tools (see the module docstring)."""
    if transport == "streamable-http":
        transport = "http"
    if transport not in ("http", "sse"):
        raise ValueError(f"transport must be 'http' (streamable HTTP) or 'sse', not {transport!r}")
    if not name or not isinstance(url, str) or not url:
        raise ValueError("connect_mcp_server() needs a name and url=")
    return _Connecting(name, {"url": url, "headers": dict(headers or {}), "transport": transport})
