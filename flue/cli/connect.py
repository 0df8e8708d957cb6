"""``flue connect <agent> <instance-id>``: an interactive loop against one agent instance.

Each stdin line is a prompt, admitted as a durable submission to
``agents/<agent>/<instance-id>`` and run in order. Events render on stderr
(coloured, with a spinner and the elapsed time while the model, a tool or a
shell command runs, when stderr is a terminal; plain lines in a pipe). Each
answer goes to stdout: streamed token by token when stdout is a terminal, and
as one JSON object ``{"text": ...}`` (indented, as Flue prints it) when stdout
is not a terminal or with ``--json``. Then ``✔ completed in <s>`` (or the
failure) follows on stderr: answer first, then "completed".

When stdin is a terminal the prompt is labelled with the agent's name
(``assistant> ``) and, when stdout is one too, read with line editing and
history (Python's ``readline``: arrow keys, Ctrl+R); the history is kept in
``$XDG_STATE_HOME/flue/connect_history`` (default
``~/.local/state/flue/connect_history``), never in the project. Ctrl+D (end
of input) exits 0; works with piped stdin too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from flue.cli import add_project_flags

HISTORY_LENGTH = 1000


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


def history_path() -> Path:
    """Where prompt history is kept: the user's state directory, never the project."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "flue" / "connect_history"


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
    # the answer streams to stdout on a terminal; "completed" is ours, printed after the answer
    printer = EventPrinter(show_text=not as_json, text_out=sys.stdout, spinner=True)
    runtime.sink.subscribe(printer.subscriber(lambda e: e.instance_id == instance_id and e.type != "submission_settled"))
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
    terminal = _Terminal.save() if interactive else None
    read_line = (_prompt_reader(loop, agent, printer.terminal and not printer.console.no_color)
                 if interactive else await _line_reader(loop))
    print(f"connected to {agent}/{instance_id} (session {session}); Ctrl+D to exit", file=sys.stderr)
    try:
        while True:
            line = await read_line()
            if not line:
                if interactive:
                    print(file=sys.stderr)  # the shell's prompt on its own line after Ctrl+D
                return 0
            text = line.strip()
            if not text:
                continue
            printer.written = 0
            started = time.monotonic()
            sub, _ = await coordinator.admit(agent, instance_id, prompt_input(text, session=session))
            done = await coordinator.wait(sub.submission_id)
            printer.end_text()
            secs = time.monotonic() - started
            if done.status == "completed":
                if as_json or not printer.written:  # nothing streamed: print it whole
                    print_answer(done.result, as_json=as_json)
                printer.line(f"✔ completed in {secs:.2f}s", "green")
            else:
                err = done.error or {}
                if printer.shown(err):  # told once: the operation's line above said it
                    printer.line(f"✘ failed after {secs:.2f}s", "red")
                else:
                    printer.line(f"flue connect: prompt failed: {err.get('type') or err.get('name')}: "
                                 f"{err.get('message')}", "red")
    except asyncio.CancelledError:
        if interactive:
            print(file=sys.stderr)  # past the ^C, so the shell's prompt starts a line
        return 130 if signalled and signalled[0] == signal.SIGINT else 143
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        printer.close()
        if terminal is not None:
            terminal.restore()
        await runtime.close()


class _Terminal:
    """The terminal's mode at start, restored at exit (a read interrupted by Ctrl+C or SIGTERM
    may leave readline's mode behind)."""

    def __init__(self, fd: int, attrs: list):
        self.fd, self.attrs = fd, attrs

    @classmethod
    def save(cls) -> _Terminal | None:
        try:
            import termios

            fd = sys.stdin.fileno()
            return cls(fd, termios.tcgetattr(fd))
        except (ImportError, OSError, ValueError):
            return None

    def restore(self) -> None:
        import termios

        with contextlib.suppress(OSError, termios.error):
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.attrs)


def _prompt_reader(loop: asyncio.AbstractEventLoop, agent: str, color: bool) -> Callable[[], Awaitable[str]]:
    """Read prompts from a terminal, labelled ``<agent>> ``: with readline (line editing and
    history) when stdout is the terminal too, else plainly with the label on stderr.

    Each read runs in a daemon thread, so a signal can end the program while a read waits."""
    use_readline = sys.stdout.isatty()
    if use_readline:
        use_readline = _load_history()
    if use_readline and color:  # \001/\002 tell readline the escapes take no columns
        label = f"\001\x1b[1;36m\002{agent}\001\x1b[0m\002> "
    else:
        label = f"{agent}> "

    def read_blocking() -> str:
        try:
            if use_readline:
                line = input(label)
                _save_history()
                return line + "\n"
            sys.stderr.write(label)
            sys.stderr.flush()
            return sys.stdin.readline()
        except (EOFError, OSError, ValueError):
            return ""

    async def read() -> str:
        future: asyncio.Future[str] = loop.create_future()

        def work() -> None:
            line = read_blocking()

            def deliver() -> None:
                if not future.done():
                    future.set_result(line)

            with contextlib.suppress(RuntimeError):  # the loop closed while we read
                loop.call_soon_threadsafe(deliver)

        threading.Thread(target=work, name="flue-connect-input", daemon=True).start()
        return await future

    return read


def _load_history() -> bool:
    """Turn on readline with the saved history; False where readline is unavailable."""
    try:
        import readline
    except ImportError:
        return False
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(history_path())
    return True


def _save_history() -> None:
    import readline

    path = history_path()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
        path.chmod(0o600)  # prompts are the user's own: not for other accounts to read


async def _line_reader(loop: asyncio.AbstractEventLoop) -> Callable[[], Awaitable[str]]:
    """Read stdin lines without blocking the loop (pipes), so a signal can interrupt a pending
    read; regular files fall back to a thread."""
    reader = asyncio.StreamReader()
    try:
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    except (ValueError, OSError):
        return lambda: loop.run_in_executor(None, sys.stdin.readline)

    async def read() -> str:
        return (await reader.readline()).decode("utf-8", errors="replace")

    return read
