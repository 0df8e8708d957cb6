"""``flue start``: serve the project in production.

Port: ``--port``, else the ``PORT`` environment variable (what hosting
platforms set), else ``port:`` in flue.yaml, else 3000. Host ``0.0.0.0``
unless ``--host``. A project with errors is refused (diagnostics, exit 1).

On SIGTERM or SIGINT the server stops accepting connections, lets requests,
workflow runs and agent submissions in flight finish for ``--grace`` seconds
(default 10), then cancels what is left: cancelled submissions stay in the
store and are recovered by the next server once their lease expires; cancelled
runs end ``errored``. Exit 0 after a graceful stop.

It prints the URL to call and the address the socket really listens on (with
``--port 0``, the port the system picked), warns when persistence is in memory
(nothing survives a restart), and says to pick another ``--port`` when the
port is taken. ``GET /health`` answers 200 for load balancers.

The event loop is uvloop where it is installed, asyncio's own with ``--loop asyncio``
(:mod:`flue.cli.event_loop`).

``--workers N`` runs N such servers as processes on one port (SO_REUSEPORT)
sharing the project's store; it needs file SQLite or PostgreSQL persistence
(see :mod:`flue.cli.workers`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

from flue.cli import add_project_flags
from flue.cli.event_loop import CHOICES, LoopUnavailable, loop_factory, run


def register(p: argparse.ArgumentParser) -> None:
    add_project_flags(p)
    p.add_argument("--port", type=int, default=None, help="port (default: $PORT, flue.yaml port, else 3000)")
    p.add_argument("--host", default="0.0.0.0", help="interface to listen on (default: 0.0.0.0)")
    p.add_argument("--prefix", default="", help="mount Flue's routes under this path, e.g. /api")
    p.add_argument("--grace", type=float, default=10.0, help="seconds to let work in flight finish on shutdown")
    p.add_argument("--workers", type=_positive, default=1, metavar="N",
                   help="server processes sharing the port and the store (default 1; needs file SQLite or PostgreSQL)")
    p.add_argument("--loop", choices=CHOICES, default="auto",
                   help="event loop: uvloop where installed (auto, the default), or asyncio's own")
    p.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a worker of --workers


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def resolve_port(cli_port: int | None, config_port: int | None) -> int:
    from flue.config import DEFAULT_START_PORT

    if cli_port is not None:
        return cli_port
    env = os.environ.get("PORT", "").strip()
    if env:
        if not env.isdigit() or not 0 <= int(env) <= 65535:
            raise ValueError(f"PORT={env!r} is not a port number")
        return int(env)
    return config_port or DEFAULT_START_PORT


def main(args: argparse.Namespace) -> int:
    from flue.cli.dev import configure_logging
    from flue.cli.run import load_cli_project

    try:
        factory = loop_factory(args.loop)
    except LoopUnavailable as exc:
        print(f"flue start: {exc}", file=sys.stderr)
        return 1
    project = load_cli_project(args, serve=True)
    if project is None:
        return 1
    try:
        port = resolve_port(args.port, project.config.port)
    except ValueError as exc:
        print(f"flue start: {exc}", file=sys.stderr)
        return 1
    if args.workers > 1:
        from flue.cli.workers import supervise
        from flue.server.app import normalize_prefix

        args.prefix_path = normalize_prefix(args.prefix)
        return supervise(args, project, port)
    configure_logging(access=False)
    return run(_serve(project, args, port), factory)


async def _serve(project, args: argparse.Namespace, port: int) -> int:
    from flue.cli.workers import WORKER, signal_ready
    from flue.runtime.runtime import Runtime
    from flue.server.app import flue_state, make_app, normalize_prefix
    from flue.server.serve import Listener, bind_error

    listener = Listener(args.host, port, reuse_port=args.reuse_port)
    try:
        listener.bind()
    except OSError as exc:
        print(bind_error("flue start", args.host, port, exc), file=sys.stderr)
        return 1
    try:
        runtime = await Runtime.open(project)
    except Exception as exc:
        print(f"flue start: cannot open persistence: {exc}", file=sys.stderr)
        await listener.stop()
        return 1
    runtime.serving_port = port or None  # with a fixed port, part of the default replica id
    try:
        await runtime.claim_identity()  # before the coordinator starts (flue.runtime.replica)
    except Exception as exc:
        print(f"flue start: {exc}", file=sys.stderr)
        await runtime.close()
        await listener.stop()
        return 1
    prefix = normalize_prefix(args.prefix)  # "api", "/api/" -> "/api"
    app = make_app(runtime, prefix=prefix)
    state = flue_state(app)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await listener.start(app, shutdown_timeout=args.grace)
        if getattr(runtime.adapter, "in_memory", False):
            print("flue start: warning: persistence is in memory: runs, sessions and queued prompts are lost "
                  "when the server stops; set persistence: in flue.yaml (docs/persistence.md)",
                  file=sys.stderr, flush=True)
        worker = os.environ.get(WORKER)
        who = f"worker {worker} (pid {os.getpid()}) serving" if worker else "serving"
        print(f"flue start: {who} {project.root} on {listener.url}{prefix} (listening on {listener.bound})",
              file=sys.stderr, flush=True)
        if project.config.playground.enabled and not worker:
            print(f"flue start: playground at {listener.url}{prefix}/_flue/ (it asks for the admin token)", file=sys.stderr, flush=True)
        _tune_gc()
        signal_ready()
        await stop.wait()
        print("flue start: shutting down", file=sys.stderr, flush=True)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # stop accepting and let requests, runs and submissions finish, all within one grace period
        await asyncio.gather(
            listener.stop(),
            state.drain_runs(args.grace),
            runtime.coordinator.stop(grace=args.grace),
            return_exceptions=True,
        )
        await runtime.close()
    return 0


#: Allocations (net, of container objects) between two young-generation collections; CPython's 700
#: made a busy server collect hundreds of times a second, each pass walking every in-flight prompt.
GC_YOUNG_THRESHOLD = 10_000


def _tune_gc() -> None:
    """Once the server is up: freeze what startup made (modules, the project, the app) out of the
    collector's reach, so a full collection walks only what requests made since (it walked
    everything: 40-50 ms pauses, several per second under load), and collect the young
    generation less often. Measured with ``benchmarks/one_side.py``: GC time per agent prompt
    about halved, no full-collection pause in the no-model workflow's p99 any more."""
    import gc

    gc.collect()
    gc.freeze()
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)

