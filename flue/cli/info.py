"""``flue info``: the project as found, for a person (rich) or a program (--json).

Each agent is listed with its tools (``tools`` in ``--json``: ``{name, source}``,
``source`` ``builtin``, ``plugin`` with ``plugin``, ``mcp`` as
``mcp__<server>__*``, or ``unknown``). In a pipe lines are not cut to 80
columns; on a narrow terminal cells wrap.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from flue.cli import add_project_flags
from flue.redaction import use_project


def register(p: argparse.ArgumentParser) -> None:
    add_project_flags(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the readable report")


def load_for_cli(args: argparse.Namespace) -> Any:
    """Load ``.env`` (or ``--env``) and the project at ``--root``; None, after saying why, when
    the env file is missing. Shared by the commands that report on a project (info, build)."""
    from pathlib import Path

    from flue.config import load_env_file
    from flue.project import load_project

    root = Path(args.root)
    try:
        load_env_file(root, args.env_file)
    except FileNotFoundError as exc:
        print(f"flue: {exc}", file=sys.stderr)
        return None
    return load_project(root)


def main(args: argparse.Namespace) -> int:
    project = load_for_cli(args)
    if project is None:
        return 1
    info = project.info()
    tools = agent_tools(project)
    for agent in info["agents"]:
        agent["tools"] = tools.get(agent["name"], [])
    doc = use_project(project).scrub(info)  # no known secret in the report (flue.redaction)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        _render(doc)
    return 1 if project.errors else 0


def agent_tools(project: Any) -> dict[str, list[dict[str, str]]]:
    """The tools each agent has, by agent name: ``{name, source}`` with ``source`` one of
    ``builtin``, ``plugin`` (and ``plugin``: which), ``mcp``, ``code`` (a Python agent's
    initializer chooses) or ``unknown`` (a name nothing defines: its diagnostic says so); a
    profile's tools and servers count as the agent's. Found without running anything: an MCP server's tools
    are listed as ``mcp__<server>__*``, since naming them would mean connecting to it."""
    from flue.agent import resolve_agent
    from flue.harness.errors import AgentResolutionError
    from flue.tools import BUILTIN_TOOL_NAMES

    named = project.registries.tools.entries
    out: dict[str, list[dict[str, str]]] = {}
    for name, definition in project.agents.items():
        if definition.module is not None:  # agents/<name>.py: its initializer decides, at init
            out[name] = [{"name": "(set by init_agent)", "source": "code"}]
            continue
        try:
            agent: Any = resolve_agent(definition, project)  # a profile's tools and servers count
        except AgentResolutionError:
            agent = definition  # a broken profile chain: its diagnostic says why
        rows: list[dict[str, str]] = []
        for tool in agent.tools if agent.tools is not None else BUILTIN_TOOL_NAMES:
            tool = tool if isinstance(tool, str) else getattr(tool, "name", str(tool))
            if tool in BUILTIN_TOOL_NAMES:
                rows.append({"name": tool, "source": "builtin"})
            elif tool in named:
                rows.append({"name": tool, "source": "plugin", "plugin": named[tool][0]})
            else:
                rows.append({"name": tool, "source": "unknown"})
        rows += [{"name": f"mcp__{server}__*", "source": "mcp"} for server in agent.mcp]
        out[name] = rows
    return out


def _tools_cell(tools: list[dict]) -> str:
    marks = {"plugin": " (plugin)", "mcp": " (mcp)", "unknown": " (unknown)", "code": ""}
    return ", ".join(t["name"] + marks.get(t["source"], "") for t in tools) or "(none)"


def _render(doc: dict) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # in a pipe rich would cut lines at 80 columns: lines there are as long as their content
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, width=100_000)
    console.print(f"[bold]root[/bold]        {doc['root']}")
    console.print(f"[bold]source root[/bold] {doc['sourceRoot']}")
    console.print(f"[bold]config[/bold]      {doc['config'] or '(none)'}")

    def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
        if not rows:
            console.print(f"\n[bold]{title}[/bold]: none")
            return
        t = Table(show_edge=False, pad_edge=False)  # the title apart: rich pads it to the table's width
        for c in columns:
            t.add_column(c, overflow="fold")  # a narrow terminal wraps a cell, never cuts it
        for r in rows:
            t.add_row(*[escape(x or "") for x in r])
        console.print()
        console.print(title, style="bold")
        console.print(t)

    table(
        "agents",
        ["name", "model", "http", "tools", "description", "file"],
        [[a["name"], str(a["model"] or "-"), "yes" if a["http"] else "", _tools_cell(a.get("tools", [])),
          a["description"], a["file"]] for a in doc["agents"]],
    )
    table(
        "workflows",
        ["name", "kind", "http", "description", "file"],
        [[w["name"], w["kind"], "yes" if w["http"] else "", (w["description"] or "").split("\n")[0], w["file"]] for w in doc["workflows"]],
    )
    table("skills", ["name", "description", "file"], [[s["name"], s["description"], s["file"]] for s in doc["skills"]])
    table(
        "channels",
        ["name", "kind", "routes", "rules", "file"],
        [[c["name"], c["kind"], "\n".join(f"{r.split(' ', 1)[0]} /channels/{c['name']}{r.split(' ', 1)[1]}" for r in c["routes"]),
          "\n".join(_rule(r) for r in c["rules"]), c["file"]] for c in doc["channels"]],
    )
    table("plugins", ["name", "source", "origin"], [[p["name"], p["source"], p["origin"]] for p in doc["plugins"]])
    print_diagnostics(doc["diagnostics"], console)


def print_diagnostics(diags: list[dict], console: Any = None) -> None:
    """The diagnostics block of ``flue info`` (also printed by ``flue build``)."""
    from rich.console import Console
    from rich.markup import escape

    console = console or Console(stderr=True, highlight=False)
    if not diags:
        console.print("\n[green]no diagnostics[/green]")
        return
    console.print(f"\n[bold]diagnostics[/bold] ({len(diags)})")
    for d in diags:
        where = (d["file"] or "<project>") + (f":{d['line']}" if d["line"] else "")
        color = "red" if d["severity"] == "error" else "yellow"
        console.print(f"  [{color}]{d['severity']}[/{color}] {escape(where)} [dim]{d['code']}[/dim]\n    {escape(d['message'])}")
        if d["hint"]:
            console.print(f"    [dim]hint: {escape(d['hint'])}[/dim]")


def _rule(rule: dict) -> str:
    when = f" when {rule['when']}" if rule.get("when") else ""
    return f"{rule['on']} -> {rule['agent']}{' (reply)' if rule.get('reply') else ''}{when}"
