"""``flue add [<kind> <name|url>] [--print]``: implementation guides for a coding agent.

With no arguments: the blueprints by kind, with descriptions (stdout). With a
kind and a name: the guide's Markdown on stdout when ``--print`` is given or
stdout is not a terminal (``flue add channel slack | claude``); in a terminal,
a short recipe to pipe it into a coding agent instead (on stderr). With a kind
and an ``http(s)://`` URL: the kind's generic guide, naming that URL as the
starting point. Guides ship with Flue and its plugins; nothing is fetched.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

AGENTS = ("claude", "codex", "cursor-agent", "opencode", "pi")


def register(p: argparse.ArgumentParser) -> None:
    add_blueprint_args(p)


def add_blueprint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", nargs="?", help="sandbox, channel, database or tooling")
    p.add_argument("name", nargs="?", help="a blueprint name (see 'flue add'), or a URL of the provider's docs")
    p.add_argument("--print", dest="print_", action="store_true",
                   help="print the guide's Markdown to stdout even in a terminal")
    p.add_argument("--root", default=".", help="project root, for project plugins' blueprints (default: .)")


def is_url(text: str) -> bool:
    parsed = urlparse(text)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def agent_mode(args: argparse.Namespace) -> bool:
    """Print Markdown (for a coding agent or a pipe) rather than the human recipe."""
    return bool(args.print_) or not sys.stdout.isatty()


def load(args: argparse.Namespace) -> Any:
    from flue.blueprints import load_catalog
    from flue.project import resolve_source_root

    root = Path(args.root).resolve()
    catalog = load_catalog(resolve_source_root(root) if root.is_dir() else None)
    for warning in catalog.warnings:
        print(f"flue: warning: {warning}", file=sys.stderr)
    return catalog


def check_kind(kind: str) -> bool:
    from flue.blueprints import KINDS

    if kind not in KINDS:
        print(f'Error: Unknown blueprint kind "{kind}". Known kinds: {", ".join(KINDS)}', file=sys.stderr)
        return False
    return True


def resolve(catalog: Any, kind: str, name: str, *, command: str) -> Any:
    """The named blueprint, or None after printing what exists for that kind."""
    bp = catalog.find(kind, name)
    if bp is None:
        print(f'Error: Blueprint "{name}" not found for kind "{kind}".', file=sys.stderr)
        rows = catalog.by_kind(kind)
        if rows:
            print(f"\nAvailable {kind} blueprints:", file=sys.stderr)
            print(table(rows), file=sys.stderr)
        print(f"\nTo build one from the provider's documentation with your coding agent:\n  flue {command} {kind} <url>",
              file=sys.stderr)
    return bp


def table(rows: list[Any]) -> str:
    width = max(len(b.name) for b in rows)
    lines = []
    for b in rows:
        extra = f"  ({b.source})" if b.source != "flue" else ""
        lines.append(f"  {b.name.ljust(width)}  {b.description}{extra}")
    return "\n".join(lines)


def listing(catalog: Any) -> str:
    from flue.blueprints import KINDS

    out = ["Blueprints: implementation guides for a coding agent (flue add <kind> <name>)", ""]
    for kind in KINDS:
        rows = catalog.by_kind(kind)
        if rows:
            out += [kind, table(rows), ""]
    out.append("Don't see what you need? Start from the provider's documentation:")
    out += [f"  flue add {kind} <url>" for kind in KINDS if kind in catalog.generic]
    return "\n".join(out) + "\n"


def recipe(command: list[str], title: str) -> str:
    cmd = " ".join(shlex.quote(part) for part in command)
    lines = [title, "", "This is an implementation guide for a coding agent. Pipe it to yours:"]
    lines += [f"  {cmd} --print | {agent}" for agent in AGENTS]
    lines += ["", f'Or run "{cmd} --print" and follow the instructions yourself.']
    return "\n".join(lines) + "\n"


def main(args: argparse.Namespace) -> int:
    catalog = load(args)
    if args.kind is None:
        sys.stdout.write(listing(catalog))
        return 0
    if not check_kind(args.kind):
        return 1
    if args.name is None:
        print("Error: Missing blueprint name or URL.\nusage: flue add [<kind> <name|url>] [--print]", file=sys.stderr)
        return 1
    if is_url(args.name):
        bp = catalog.generic.get(args.kind)
        if bp is None:
            print(f"Error: no generic {args.kind} guide is installed", file=sys.stderr)
            return 1
        text, title = bp.render(args.name), f"Generic {args.kind} guide, starting from {args.name}"
    else:
        bp = resolve(catalog, args.kind, args.name, command="add")
        if bp is None:
            return 1
        text, title = bp.render(), f"{bp.slug} (version {bp.version}): {bp.description}"
    if agent_mode(args):
        sys.stdout.write(text)
    else:
        sys.stderr.write(recipe(["flue", "add", args.kind, args.name], title))
    return 0
