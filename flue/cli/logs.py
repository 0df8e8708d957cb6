"""``flue logs <runId>``: replay or follow a workflow run's events from a running server.

Read-only: it reads ``GET /runs/<runId>`` with the Durable Streams protocol.
Without ``--follow``/``--no-follow`` it first reads the run record
(``?meta``) and follows only an active run. ``--since`` resumes after an
offset (the ``offset`` field of ``--format ndjson`` lines). ``--types`` and
``--limit`` filter on the client. ``pretty`` writes readable lines on stderr;
``ndjson`` writes one JSON event per stdout line, with its ``offset``.

Exit 0 on success, 1 when a request or the stream fails, 2 when the run ended
with ``isError: true``, 130 on Ctrl+C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys

DEFAULT_SERVER = "http://127.0.0.1:3583"
EXIT_RUN_FAILED = 2


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_id", metavar="runId", help="the workflow run id (run_...)")
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"base URL of the Flue server (default: {DEFAULT_SERVER})")
    p.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                   help="an HTTP header to send (repeatable), e.g. 'Authorization: Bearer $TOKEN'")
    follow = p.add_mutually_exclusive_group()
    follow.add_argument("-f", "--follow", dest="follow", action="store_true", default=None,
                        help="follow live events until the run ends")
    follow.add_argument("--no-follow", dest="follow", action="store_false", help="replay what is there and exit")
    p.add_argument("--since", default=None, metavar="OFFSET", help="resume after this offset (from ndjson output)")
    p.add_argument("--types", default=None, metavar="a,b", help="only these event types, e.g. log,tool,run_end")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N events")
    p.add_argument("--format", choices=("pretty", "ndjson"), default="pretty", help="output format (default: pretty)")


def parse_headers(values: list[str]) -> dict[str, str]:
    """``Name: value`` strings to a dict; duplicates and ``Accept`` (the stream client's) are errors."""
    headers: dict[str, str] = {}
    seen: set[str] = set()
    for raw in values:
        name, sep, value = raw.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise ValueError(f"--header {raw!r} is not 'Name: value'")
        key = name.lower()
        if key == "accept":
            raise ValueError("--header Accept is reserved: the stream reader sets it")
        if key in seen:
            raise ValueError(f"--header {name} is given more than once")
        seen.add(key)
        headers[name] = value.strip()
    return headers


def main(args: argparse.Namespace) -> int:
    try:
        headers = parse_headers(args.header)
    except ValueError as exc:
        print(f"flue logs: {exc}", file=sys.stderr)
        return 1
    if args.limit is not None and args.limit < 1:
        print("flue logs: --limit must be a positive integer", file=sys.stderr)
        return 1
    types = {t.strip() for t in args.types.split(",") if t.strip()} if args.types else None
    return asyncio.run(_logs(args, headers, types))


async def _logs(args: argparse.Namespace, headers: dict[str, str], types: set[str] | None) -> int:
    task = asyncio.current_task()
    interrupted: list[bool] = []

    def on_sigint() -> None:
        interrupted.append(True)
        if task is not None:
            task.cancel()

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, on_sigint)
    try:
        return await _read(args, headers, types)
    except asyncio.CancelledError:
        if interrupted:
            return 130
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


async def _read(args: argparse.Namespace, headers: dict[str, str], types: set[str] | None) -> int:
    from flue.cli.render import EventPrinter
    from flue.client import FlueClient, FlueClientError

    printer = EventPrinter()
    emitted = 0
    failed = False
    async with FlueClient(args.server, headers=headers) as client:
        try:
            follow = args.follow
            if follow is None:
                record = await client.runs.get(args.run_id)
                follow = record.status == "active"
            stream = client.read(client.runs.url(args.run_id), offset=args.since or "-1", live=follow)
            async with contextlib.aclosing(stream):
                async for event, offset in stream:
                    if event.get("type") == "run_end":
                        failed = bool(event.get("isError"))
                    if types is None or event.get("type") in types:
                        if args.format == "ndjson":
                            print(json.dumps({**event, "offset": offset}, ensure_ascii=False), flush=True)
                        else:
                            printer(event)
                        emitted += 1
                    if (args.limit is not None and emitted >= args.limit) or event.get("type") == "run_end":
                        break
        except FlueClientError as exc:
            print(f"flue logs: {_explain(exc, args.run_id, args.server)}", file=sys.stderr)
            return 1
    return EXIT_RUN_FAILED if failed else 0


def _explain(exc, run_id: str, server: str) -> str:
    if exc.status is None:
        return f"cannot reach {server}: {exc.message} (is flue dev or flue start running there?)"
    if exc.status == 404:
        return f"run {run_id} was not found on {server}"
    if exc.status == 401:
        return f"{server} refused the request (401): pass a token with --header 'Authorization: Bearer <token>'"
    return str(exc)
