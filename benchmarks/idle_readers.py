"""CPU of idle stream readers: what do N readers waiting on quiet streams cost a ``flue start`` server?

The zero-latency scripted model server and ``flue start`` on a scratch project
(file SQLite by default) run as subprocesses. One prompt to each of
``--instances`` agent instances creates their event streams; then ``--readers``
long-poll readers (``GET /agents/bench/<id>?offset=now&live=long-poll``) and,
with ``--sse``, as many SSE readers (``live=sse``) wait on those streams, which
nobody appends to. A reader answered (204 after the long-poll timeout, or the
SSE connection ending) reconnects from its ``Stream-Next-Offset``, as a client
does. After a short settle time the server's CPU (``utime + stime`` from
``/proc/<pid>/stat``) is measured over ``--seconds`` (default 20) and printed
as a percentage of one core. The issue's target: under 2% for 500 idle
long-poll readers (exit 1 otherwise).

    .venv/bin/python benchmarks/idle_readers.py              # 500 long-poll readers, ~35 s
    .venv/bin/python benchmarks/idle_readers.py --sse        # and 500 SSE readers
    .venv/bin/python benchmarks/idle_readers.py --quick      # 50 readers, 5 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

TARGET_PERCENT = 2.0


async def long_poll_reader(session: Any, url: str, opened: list[int], stop: asyncio.Event) -> None:
    offset = "now"
    while not stop.is_set():
        # counted as open once its request is sent (see measure's trace config): the answer comes later
        async with session.get(url, params={"offset": offset, "live": "long-poll"}) as resp:
            await resp.read()
            if resp.status not in (200, 204):
                raise RuntimeError(f"long-poll answered {resp.status}")
            offset = resp.headers["Stream-Next-Offset"]


async def sse_reader(session: Any, url: str, opened: list[int], stop: asyncio.Event) -> None:
    offset = "now"
    while not stop.is_set():
        async with session.get(url, params={"offset": offset, "live": "sse"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"SSE answered {resp.status}")
            async for line in resp.content:
                if line.startswith(b"data:") and b"streamNextOffset" in line:
                    offset = json.loads(line[5:])["streamNextOffset"]


async def measure(base: str, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    connector = aiohttp.TCPConnector(limit=0)
    opened = [0]
    trace = aiohttp.TraceConfig()

    async def sent(_session: Any, _ctx: Any, params: Any) -> None:
        if "live=" in str(params.url):
            opened[0] += 1

    trace.on_request_headers_sent.append(sent)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector, trace_configs=[trace]) as session:
        ids = [f"idle-{i}" for i in range(args.instances)]
        for instance in ids:
            async with session.post(f"{base}/agents/bench/{instance}?wait=result", json={"message": "hi"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"prompt answered {resp.status}: {await resp.text()}")
        stop = asyncio.Event()
        tasks = []
        for kind, count, reader in (("long-poll", args.readers, long_poll_reader),
                                    ("sse", args.readers if args.sse else 0, sse_reader)):
            for i in range(count):
                url = f"{base}/agents/bench/{ids[i % len(ids)]}"
                tasks.append(asyncio.create_task(reader(session, url, opened, stop), name=f"{kind}-{i}"))
        want = len(tasks)
        deadline = time.monotonic() + 30
        while opened[0] < want:  # every reader's first request is out
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {opened[0]} of {want} readers connected")
            failed = [t for t in tasks if t.done()]
            if failed:
                failed[0].result()
            await asyncio.sleep(0.1)
        await asyncio.sleep(args.settle)
        cpu0, t0 = bk.cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.seconds)
        cpu1, t1 = bk.cpu_seconds(pid), time.perf_counter()
        failed = [t for t in tasks if t.done()]
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if failed:
            failed[0].result()
    percent = (cpu1 - cpu0) / (t1 - t0) * 100
    return {"readers": want, "long_poll": args.readers, "sse": args.readers if args.sse else 0,
            "instances": args.instances, "seconds": round(t1 - t0, 2), "server_cpu_percent": round(percent, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readers", type=int, default=500, help="long-poll readers (default 500)")
    parser.add_argument("--sse", action="store_true", help="also open as many SSE readers")
    parser.add_argument("--instances", type=int, default=10, help="agent instances the readers spread over")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window (default 20)")
    parser.add_argument("--settle", type=float, default=2.0, help="wait after the readers connect (default 2)")
    parser.add_argument("--persistence", choices=("file", "memory"), default="file")
    bk.add_output_flags(parser, "50 readers, 5 s window")
    args = parser.parse_args()
    if args.quick:
        args.readers, args.seconds, args.instances = 50, 5.0, 2
    info = bk.machine_info()
    bk.print_machine(info)
    with bk.served_project("flue-idle-", args.persistence, "none") as served:
        result = asyncio.run(measure(served.base, served.pid, args))
    rows = [[f"{result['long_poll']} long-poll + {result['sse']} SSE", result["instances"], result["seconds"],
             result["server_cpu_percent"]]]
    print(bk.table(["idle readers", "streams", "window s", "server CPU % of a core"], rows,
                   markdown=args.markdown))
    bk.write_json(args.json, {"machine": info, "result": result})
    ok = result["server_cpu_percent"] < TARGET_PERCENT * (2 if args.sse else 1)
    print(f"target: under {TARGET_PERCENT}% for 500 idle long-poll readers: {'met' if ok else 'NOT met'}")
    return 0 if ok or args.quick else 1


if __name__ == "__main__":
    sys.exit(main())
