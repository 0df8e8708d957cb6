"""``flue build [--output dist] [--include PATH]``: a deployable artifact (see :mod:`flue.build`).

Runs the same diagnostics as ``flue info`` first: exit 1 on any error, or when
the project has no agent and no workflow.
"""

from __future__ import annotations

import argparse
import sys

from flue.cli import add_project_flags


def register(p: argparse.ArgumentParser) -> None:
    add_project_flags(p)
    p.add_argument("--output", default=None, help="where to write the artifact (default: <root>/dist)")
    p.add_argument("--include", action="append", default=[], metavar="PATH",
                   help="also copy this file or folder (relative to the root); repeatable")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from flue.build import BuildError, build
    from flue.cli.info import load_for_cli, print_diagnostics

    project = load_for_cli(args)
    if project is None:
        return 1
    if project.diagnostics:
        print_diagnostics([d.model_dump() for d in project.diagnostics])
    if project.errors:
        print(f"Error: Build failed: the project has {len(project.errors)} error(s); fix them (see above) "
              "and build again", file=sys.stderr)
        return 1
    if not project.agents and not project.workflows:
        print(f"Error: Build failed: no agent or workflow found under {project.source_root} "
              "(agents/<name>.md, workflows/<name>.py or .yaml)", file=sys.stderr)
        return 1
    output = Path(args.output) if args.output else project.root / "dist"
    try:
        manifest = build(project, output, includes=args.include)
    except BuildError as exc:
        print(f"Error: Build failed: {exc}", file=sys.stderr)
        return 1
    out = output.resolve()
    rows = [("root", str(project.root)), ("output", str(out)),
            ("agents", ", ".join(a["name"] for a in manifest["agents"]) or "-"),
            ("workflows", ", ".join(w["name"] for w in manifest["workflows"]) or "-"),
            ("channels", ", ".join(c["name"] for c in manifest["channels"]) or "-"),
            ("files", str(len(manifest["files"]))),
            ("packages", f"{len(manifest['requirements'])} pinned, {len(manifest['wheels'])} bundled wheel(s)")]
    for label, value in rows:
        print(f"    {label.ljust(10)}{value}", file=sys.stderr)
    for skipped in manifest["skipped"]:
        print(f"    skipped   {skipped['path']} ({skipped['reason']})", file=sys.stderr)
    print(f"done built {out}\n  run it: cd {out} && pip install -r requirements.txt && flue start\n"
          f"  or:     docker build -t my-flue-app {out}", file=sys.stderr)
    return 0
