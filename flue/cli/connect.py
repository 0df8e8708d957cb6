"""``flue connect <agent> <instance-id>``: an interactive loop against one agent instance.

Each stdin line is a prompt, admitted as a durable submission to
``agents/<agent>/<instance-id>`` and run in order; events render on stderr,
each answer is printed on stdout: as plain text in a terminal, and as a JSON
object ``{"text": ...}`` (indented, as Flue prints it) when stdout is not a
terminal or with ``--json``. Ctrl+D (end of input) exits 0; works with piped
stdin too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from flue.cli import add_project_flags


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("agent", help="agent name (a file in agents/)")
    p.add_argument("instance_id", metavar="instance-id", help="agent instance id, e.g. local or a thread id")
    p.add_argument("--session", default="default", help="session name inside the instance (default: default)")
    p.add_argument("--json", action="store_true",
                   help='print each answer as {"text": ...} JSON (the default when stdout is not a terminal)')
    add_project_flags(p)


def main(args: argparse.Namespace) -> int:
    from flue.cli.run import load_cli_project

    project = load_cli_project(args)
    if project is None:
        return 1
    if args.agent not in project.agents:
        print(f"flue connect: unknown agent '{args.agent}' (available: {', '.join(sorted(project.agents)) or 'none'})", file=sys.stderr)
        return 1
    if ":" in args.instance_id or "/" in args.instance_id or not args.instance_id:
        print("flue connect: instance-id must be non-empty and contain no ':' or '/'", file=sys.stderr)
        return 1
    as_json = args.json or not sys.stdout.isatty()
    return asyncio.run(_connect(project, args.agent, args.instance_id, args.session, as_json=as_json))


def print_answer(result: dict | None, *, as_json: bool) -> None:
    text = (result or {}).get("text", "")
    print(json.dumps({"text": text}, indent=2, ensure_ascii=False) if as_json else text, flush=True)


async def _connect(project, agent: str, instance_id: str, session: str, *, as_json: bool = False) -> int:
    from flue.cli.render import EventPrinter
    from flue.runtime.instances import prompt_input
    from flue.runtime.runtime import Runtime

    loop = asyncio.get_running_loop()
    try:
        runtime = await Runtime.open(project)
    except Exception as exc:
        print(f"flue connect: cannot open persistence: {exc}", file=sys.stderr)
        return 1
    printer = EventPrinter(show_text=False)
    runtime.sink.subscribe(printer.subscriber(lambda e: e.instance_id == instance_id))
    coordinator = await runtime.start_coordinator()
    main_task = asyncio.current_task()
    signalled: list[int] = []

    def on_signal(signum: int) -> None:
        signalled.append(signum)
        if main_task is not None:
            main_task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)
    interactive = sys.stdin.isatty()
    read_line = await _line_reader(loop)
    print(f"connected to {agent}/{instance_id} (session {session}); Ctrl+D to exit", file=sys.stderr)
    try:
        while True:
            if interactive:
                print("> ", end="", file=sys.stderr, flush=True)
            line = await read_line()
            if not line:
                return 0
            text = line.strip()
            if not text:
                continue
            sub, _ = await coordinator.admit(agent, instance_id, prompt_input(text, session=session))
            done = await coordinator.wait(sub.submission_id)
            if done.status == "completed":
                print_answer(done.result, as_json=as_json)
            else:
                err = done.error or {}
                print(f"flue connect: prompt failed: {err.get('type') or err.get('name')}: {err.get('message')}",
                      file=sys.stderr)
    except asyncio.CancelledError:
        return 130 if signalled and signalled[0] == signal.SIGINT else 143
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await runtime.close()


async def _line_reader(loop: asyncio.AbstractEventLoop):
    """Read stdin lines without blocking the loop (pipes and terminals), so a
    signal can interrupt a pending read; regular files fall back to a thread."""
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return lambda: loop.run_in_executor(None, sys.stdin.readline)

    async def read() -> str:
        return (await reader.readline()).decode("utf-8", errors="replace")

    return read
