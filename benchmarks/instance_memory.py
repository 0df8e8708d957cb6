"""Memory per agent instance: RSS of a real ``flue start`` server, and of live in-process harnesses.

Server (``--server``): the zero-latency scripted model server and ``flue start``
on a scratch project run as subprocesses (as in http_throughput.py). After a
warm-up, N distinct instances ``/agents/bench/<id>`` are each prompted once
(``?wait=result``), and the server's ``VmRSS`` (``/proc/<pid>/status``) is read
at each checkpoint. Bytes per instance = RSS growth / instances. With
``persistence memory`` (SQLite in memory, a project's default) the growth
includes the instance's persisted state (history, events, submission, sandbox
snapshot); with ``persistence file`` the state is on disk (the file size per
instance is reported too) and the growth is what the process itself keeps. A
control prompts one instance N times, to tell per-instance from per-request
growth.

In process (``--inproc``): N harnesses of the same agent with its virtual
(bashkit) sandbox, each prompted once through the in-process ScriptedModel and
kept alive (a live instance: its sandbox, sessions and history in memory).
Reported: RSS growth per harness, the Python-heap part of it (tracemalloc, a
separate pass), and the size of one sandbox snapshot.

    .venv/bin/python benchmarks/instance_memory.py              # ~1-2 minutes
    .venv/bin/python benchmarks/instance_memory.py --quick      # a few seconds
    .venv/bin/python benchmarks/instance_memory.py --counts 100,500,2000 --persistence file
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

BODY = {"message": "hi"}


def db_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / ".flue").glob("state.db*") if p.is_file())


async def prompt_many(session: Any, base: str, ids: list[str], concurrency: int) -> int:
    """Prompt each instance id once (``?wait=result``) with ``concurrency`` workers; returns the error count."""
    queue = list(reversed(ids))
    errors = 0

    async def worker() -> None:
        nonlocal errors
        while queue:
            iid = queue.pop()
            try:
                async with session.post(f"{base}/agents/bench/{iid}?wait=result", json=BODY) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except Exception:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return errors


async def settle_rss(pid: int) -> int:
    await asyncio.sleep(0.5)  # let the server finish writing events, leases, snapshots
    return bk.rss_bytes(pid)


async def server_memory(args: argparse.Namespace, persistence: str) -> dict[str, Any]:
    import aiohttp

    with bk.served_project("flue-bench-mem-", persistence, args.tools) as served:
        root, db, base, pid = served.root, served.db, served.base, served.pid
        tag = uuid.uuid4().hex[:6]
        async with aiohttp.ClientSession() as session:
            errors = await prompt_many(session, base, [f"warm{tag}-{i}" for i in range(args.warmup)], 4)
            base_rss = await settle_rss(pid)
            base_db = db_bytes(root) if db else 0
            rows: list[dict[str, Any]] = []
            done = 0
            prev_rss, prev_n = base_rss, 0
            t0 = time.perf_counter()
            for count in args.counts:
                ids = [f"m{tag}-{i}" for i in range(done, count)]
                errors += await prompt_many(session, base, ids, args.concurrency)
                done = count
                rss = await settle_rss(pid)
                row = {
                    "instances": count, "rss_mib": rss / 2**20,
                    "bytes_per_instance": (rss - base_rss) / count,
                    "marginal_bytes_per_instance": (rss - prev_rss) / (count - prev_n),
                    "elapsed_s": time.perf_counter() - t0,
                }
                if db:
                    row["db_bytes_per_instance"] = (db_bytes(root) - base_db) / count
                rows.append(row)
                print(f"  server ({persistence}): {count} instances, RSS {rss / 2**20:.1f} MiB", file=sys.stderr)
                prev_rss, prev_n = rss, count
            # control: prompts to a single instance (growth is measured from here)
            same_n = args.control
            control: dict[str, Any] | None = None
            if same_n:
                start_rss = await settle_rss(pid)
                start_db = db_bytes(root) if db else 0
                errors += await prompt_many(session, base, [f"one{tag}"] * same_n, 1)
                end_rss = await settle_rss(pid)
                control = {"prompts": same_n, "bytes_per_prompt": (end_rss - start_rss) / same_n}
                if db:
                    control["db_bytes_per_prompt"] = (db_bytes(root) - start_db) / same_n
                print(f"  server ({persistence}): {same_n} prompts to one instance, RSS {end_rss / 2**20:.1f} MiB",
                      file=sys.stderr)
        return {
            "persistence": persistence, "baseline_rss_mib": base_rss / 2**20, "checkpoints": rows,
            "one_instance": control, "errors": errors,
        }


async def inproc_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Live harnesses in this process (virtual sandbox, in-process scripted model)."""
    import os

    from model_server import EndlessScript

    import flue
    from flue.testing.scripted import ScriptedModel, ScriptedTurn

    workdir = Path(tempfile.mkdtemp(prefix="flue-bench-mem-"))
    try:
        root = bk.write_project(workdir / "project", "http://127.0.0.1:9/v1", tools=args.tools)
        project = flue.load_project(root)
        model = ScriptedModel()
        model.script = EndlessScript(ScriptedTurn(text="OK, done.", chunk_size=16))
        pid = os.getpid()

        async def make(n: int, prefix: str) -> list[Any]:
            out = []
            for i in range(n):
                harness = await flue.init("bench", project=project, model=model, scope=f"agents/bench/{prefix}{i}")
                await (await harness.session()).prompt("hi")
                out.append(harness)
            return out

        keep = await make(args.warmup, "warm")  # first-use allocations (imports, caches, the bashkit runtime)
        snapshot_bytes = len(await keep[0].env.snapshot()) if getattr(keep[0].env, "snapshot", None) else None
        gc.collect()
        base = bk.rss_bytes(pid)
        rows = []
        live: list[Any] = []
        prev, prev_n = base, 0
        for count in args.counts:
            live += await make(count - len(live), f"h{count}-")
            gc.collect()
            rss = bk.rss_bytes(pid)
            rows.append({
                "harnesses": count, "rss_mib": rss / 2**20, "bytes_per_harness": (rss - base) / count,
                "marginal_bytes_per_harness": (rss - prev) / (count - prev_n),
            })
            prev, prev_n = rss, count
            print(f"  in process: {count} live harnesses, RSS {rss / 2**20:.1f} MiB", file=sys.stderr)
        n = args.counts[-1]
        # Python-heap share, in a separate pass (tracemalloc's own bookkeeping would inflate RSS above)
        gc.collect()
        tracemalloc.start()
        before, _ = tracemalloc.get_traced_memory()
        more = await make(n, "t")
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        heap_per = (after - before) / n
        del live, more, keep
        return {"checkpoints": rows, "python_heap_bytes_per_harness": heap_per, "snapshot_bytes": snapshot_bytes,
                "baseline_rss_mib": base / 2**20}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Memory per agent instance (server RSS, live in-process harnesses).")
    parser.add_argument("--counts", default="100,500,1000",
                        help="instance-count checkpoints (default: 100,500,1000)")
    parser.add_argument("--persistence", choices=["memory", "file", "both"], default="both",
                        help="server persistence: SQLite in memory, a file, or both runs (default)")
    parser.add_argument("--concurrency", type=int, default=8, help="prompts in flight while filling (default: 8)")
    parser.add_argument("--warmup", type=int, default=20, help="instances prompted before the baseline (default: 20)")
    parser.add_argument("--tools", choices=["default", "none"], default="default", help="the agent's tools")
    parser.add_argument("--control", type=int, default=300,
                        help="prompts to one instance in the control run (0: skip; default: 300)")
    parser.add_argument("--skip-server", action="store_true", help="only the in-process measurement")
    parser.add_argument("--skip-inproc", action="store_true", help="only the server measurement")
    parser.add_argument("--quick", action="store_true",
                        help="counts 20,50, memory persistence, 5 warm-up, control 20")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.counts, args.persistence, args.warmup, args.control = "20,50", "memory", 5, 20
    args.counts = sorted(set(bk.parse_int_list(args.counts)))
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(0.5), 2)
    modes = ["memory", "file"] if args.persistence == "both" else [args.persistence]
    noise = bk.RunNoise()
    server = [] if args.skip_server else [asyncio.run(server_memory(args, m)) for m in modes]
    inproc = None if args.skip_inproc else asyncio.run(inproc_memory(args))
    info["other_cpu_during"] = round(noise.stop(), 2)

    print()
    bk.print_machine(info)
    print(f"settings: checkpoints {args.counts}; warm-up {args.warmup} instances; agent tools {args.tools}")
    md = args.markdown
    for res in server:
        print(f"\nflue start, persistence {res['persistence']} (baseline RSS {res['baseline_rss_mib']:.1f} MiB "
              f"after warm-up; errors {res['errors']})")
        headers = ["instances", "RSS MiB", "bytes/instance", "marginal bytes/instance"]
        has_db = res["persistence"] == "file"
        if has_db:
            headers.append("DB bytes/instance")
        rows = []
        for r in res["checkpoints"]:
            row = [r["instances"], r["rss_mib"], round(r["bytes_per_instance"]), round(r["marginal_bytes_per_instance"])]
            if has_db:
                row.append(round(r["db_bytes_per_instance"]))
            rows.append(row)
        print(bk.table(headers, rows, markdown=md))
        c = res["one_instance"]
        if c:
            db_part = f", DB {c['db_bytes_per_prompt']:,.0f} bytes/prompt" if "db_bytes_per_prompt" in c else ""
            print(f"control: {c['prompts']} prompts to one instance: RSS {c['bytes_per_prompt']:,.0f} bytes/prompt{db_part}")
    if inproc:
        print(f"\nin process: live harnesses, virtual sandbox (baseline RSS {inproc['baseline_rss_mib']:.1f} MiB)")
        print(bk.table(
            ["harnesses", "RSS MiB", "bytes/harness", "marginal bytes/harness"],
            [[r["harnesses"], r["rss_mib"], round(r["bytes_per_harness"]), round(r["marginal_bytes_per_harness"])]
             for r in inproc["checkpoints"]],
            markdown=md,
        ))
        print(f"Python heap (tracemalloc) per harness: {inproc['python_heap_bytes_per_harness']:,.0f} bytes; "
              f"one sandbox snapshot: {inproc['snapshot_bytes']} bytes")
    bk.write_json(args.json, {"benchmark": "instance_memory", "machine": info, "settings": vars(args),
                              "server": server, "inproc": inproc})
    return 1 if any(r["errors"] for r in server) else 0


if __name__ == "__main__":
    raise SystemExit(main())
