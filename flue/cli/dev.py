"""``flue dev``: serve the project locally in dev mode and reload it on changes.

Port: ``--port``, else ``port:`` in flue.yaml, else 3583; host ``127.0.0.1``
unless ``--host``. Prints the URL, the source root and what was discovered;
reloads on changes to agents, workflows, skills, channels, plugins,
``flue.yaml`` and ``.env`` (see :mod:`flue.server.dev`). Error envelopes carry
``dev`` hints. Exit 1 when the project has errors at startup or the port is
taken; 130 on SIGINT, 143 on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from flue.cli import add_project_flags

EXIT_BY_SIGNAL = {signal.SIGINT: 130, signal.SIGTERM: 143}


def register(p: argparse.ArgumentParser) -> None:
    add_project_flags(p)
    p.add_argument("--port", type=int, default=None, help="port (default: flue.yaml port, else 3583; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1)")


def configure_logging(access: bool) -> None:
    """Server warnings (e.g. a missing auth token variable) and, in dev, one line per request."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    server = logging.getLogger("flue.server")
    server.addHandler(handler)
    server.setLevel(logging.WARNING)
    server.propagate = False
    if access:
        access_log = logging.getLogger("flue.dev.access")
        access_handler = logging.StreamHandler(sys.stderr)
        access_handler.setFormatter(logging.Formatter("  %(message)s"))
        access_log.addHandler(access_handler)
        access_log.setLevel(logging.INFO)
        access_log.propagate = False


def main(args: argparse.Namespace) -> int:
    configure_logging(access=True)
    return asyncio.run(_serve(args))


async def _serve(args: argparse.Namespace) -> int:
    from flue.server.dev import DevServer

    server = DevServer(args.root, host=args.host, port=args.port, env_file=args.env_file)
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        server.stop()

    for signum in EXIT_BY_SIGNAL:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        code = await server.run()
    finally:
        for signum in EXIT_BY_SIGNAL:
            loop.remove_signal_handler(signum)
    return EXIT_BY_SIGNAL[signal.Signals(received[0])] if received else code
