"""``flue run <workflow>``: run one workflow in-process.

Events on stderr (``▶ run <id> (<workflow>)`` first), the result as formatted JSON on
stdout. On a terminal the events are coloured and a spinner with the elapsed
time shows what the run waits for (the model, a tool, a shell step); in a pipe
they are plain lines (:mod:`flue.cli.render`).
Exit 0 on success, 1 on failure, 130 on SIGINT, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from flue.cli import add_project_flags


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("workflow", help="workflow name (a file in workflows/)")
    p.add_argument("--payload", default="{}", help="JSON payload for ctx.payload (default: {})")
    add_project_flags(p)


def load_cli_project(args: argparse.Namespace, *, serve: bool = False):
    """Load .env and the project; print diagnostics and return None on errors (``serve``: also
    when there is nothing to serve)."""
    from pathlib import Path

    from flue.config import load_env_file
    from flue.project import load_project

    root = Path(args.root)
    try:
        load_env_file(root, args.env_file)
    except FileNotFoundError as exc:
        print(f"flue: {exc}", file=sys.stderr)
        return None
    project = load_project(root)
    from flue.preflight import RUN_REPORTS

    for d in project.diagnostics:
        if d.severity == "warning" and (serve or d.code not in RUN_REPORTS):
            print(d.render(), file=sys.stderr)
    errors = project.serving_errors if serve else project.errors
    if errors:
        print("flue: the project has errors:", file=sys.stderr)
        for d in errors:
            print("  " + d.render().replace("\n", "\n  "), file=sys.stderr)
        return None
    return project


def main(args: argparse.Namespace) -> int:
    from flue import strict_json

    try:
        payload = strict_json.loads(args.payload)
    except strict_json.JsonRuleError as exc:
        print(f"flue run: --payload is not valid JSON: {exc}", file=sys.stderr)
        return 1
    project = load_cli_project(args)
    if project is None:
        return 1
    if args.workflow not in project.workflows:
        available = ", ".join(sorted(project.workflows)) or "none"
        print(f"flue run: unknown workflow '{args.workflow}' (available: {available})", file=sys.stderr)
        return 1
    return asyncio.run(_run(project, args.workflow, payload))


async def _run(project, name: str, payload) -> int:
    from flue.cli.render import EventPrinter
    from flue.runtime.runtime import Runtime
    from flue.runtime.workflows import InvalidPayload, start_run

    printer = EventPrinter(spinner=True)
    loop = asyncio.get_running_loop()
    signalled: list[int] = []
    try:
        runtime = await Runtime.open(project)
    except Exception as exc:
        print(f"flue run: cannot open persistence: {exc}", file=sys.stderr)
        return 1
    try:
        runtime.sink.subscribe(printer.subscriber())
        try:
            handle = await start_run(runtime, name, payload)
        except InvalidPayload as exc:
            print(f"flue run: {exc}", file=sys.stderr)
            return 1

        def on_signal(signum: int) -> None:
            signalled.append(signum)
            handle.task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal, signum)
        try:
            record = await handle.task
        except asyncio.CancelledError:
            return 130 if signalled and signalled[0] == signal.SIGINT else 143
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        printer.close()
        if record.status != "completed":
            err = record.error or {}
            if not printer.shown(err):  # told once: the events above may have said it
                print(f"flue run: workflow '{name}' failed: {err.get('type') or err.get('name')}: {err.get('message')}",
                      file=sys.stderr)
            return 1
        if record.result is not None:
            print(json.dumps(record.result, indent=2, ensure_ascii=False))
        return 0
    finally:
        printer.close()
        await runtime.close()
