"""The ``flue`` command line.

Each command lives in ``flue/cli/<command>.py`` with ``register(subparsers)``
and ``main(args) -> int``; only the chosen command's module is imported, so
``flue --help`` stays fast (and never imports litellm).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from flue.version import __version__

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("flue.cli.init_cmd", "write a small working project"),
    "info": ("flue.cli.info", "show the project as found: agents, workflows, skills, channels, plugins, diagnostics"),
    "run": ("flue.cli.run", "run one workflow in-process: events on stderr, result on stdout"),
    "connect": ("flue.cli.connect", "talk to one agent instance: a prompt per stdin line, answers on stdout"),
    "dev": ("flue.cli.dev", "serve the project locally and reload it when files change (port 3583)"),
    "start": ("flue.cli.start", "serve the project in production (PORT, default 3000) with graceful shutdown"),
    "logs": ("flue.cli.logs", "replay or follow a workflow run's events from a running server"),
    "build": ("flue.cli.build", "write a deployable artifact (project files, manifest, pinned requirements, Dockerfile)"),
    "add": ("flue.cli.add", "list integration blueprints, or print one as a guide for a coding agent"),
    "update": ("flue.cli.update", "print the upgrade steps for files generated from a blueprint"),
    "docs": ("flue.cli.docs", "list, read or search Flue's documentation, offline"),
}


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="flue",
        description="Flue for Python: the agent harness framework.",
        epilog="Run 'flue <command> --help' for a command's options.",
    )
    parser.add_argument("-v", "--version", action="version", version=f"flue {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module, help_text) in COMMANDS.items():
        if name == load:
            importlib.import_module(module).register(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


class _Once(argparse.Action):
    """An option that may be given at most once (a second ``--env`` is an error, not a silent override)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"{option_string} may be given only once (it names one file to load)")
        setattr(namespace, self.dest, values)


def add_project_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by commands that load a project."""
    p.add_argument("--root", default=".", help="project root (default: current directory)")
    p.add_argument("--env", dest="env_file", default=None, action=_Once,
                   help="load this .env file instead of <root>/.env (once)")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "help":
        argv = ["--help"]
    command = next((a for a in argv if not a.startswith("-")), None)
    if command is not None and command not in COMMANDS:
        build_parser().print_usage(sys.stderr)
        print(f"flue: unknown command '{command}' (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 1
    parser = build_parser(load=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.main(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _closed_pipe()


#: Exit status after the reader of our output went away (``flue logs ... | head``):
#: what a process ended by SIGPIPE reports in a shell (128 + 13).
EXIT_CLOSED_PIPE = 141


def _closed_pipe() -> int:
    """Stop quietly when stdout/stderr is a pipe whose reader has gone.

    As the Python docs advise (signal module, "Note on SIGPIPE"): point the
    standard streams at devnull, so the interpreter's final flush does not
    raise (and print) a second BrokenPipeError on the way out.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        try:
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):
            pass
    os.close(devnull)
    return EXIT_CLOSED_PIPE


if __name__ == "__main__":
    raise SystemExit(main())
