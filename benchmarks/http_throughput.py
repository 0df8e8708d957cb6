"""Requests per second and latency percentiles of a real ``flue start`` server.

Three processes: the zero-latency scripted OpenAI-compatible model server
(benchmarks/model_server.py), ``flue start`` on a scratch project that
registers it (agent ``bench`` and workflow ``bench``, both HTTP-exposed), and
this process, the load generator (closed-loop asyncio aiohttp workers; each
sends its next request as soon as the previous one is answered).

Scenarios (``--scenarios``):

- ``agent-wait``:  ``POST /agents/bench/<fresh id>?wait=result`` (a new instance per request)
- ``agent-same``:  ``POST /agents/bench/<worker's id>?wait=result`` (each worker prompts its
  own instance sequentially, so its history grows by one exchange per request)
- ``workflow-wait``: ``POST /workflows/bench?wait=result`` (a run that does one prompt)
- ``agent-admit``: ``POST /agents/bench/<fresh id>`` answered ``202`` at admission; the prompts
  then run in the background while admission continues
- ``agent-shared`` (not in the default set): every worker prompts one instance, which runs
  submissions one at a time, so latency is queueing

Every non-2xx answer and every client-side failure is counted in ``errors``.

    .venv/bin/python benchmarks/http_throughput.py                # default, ~2-3 minutes
    .venv/bin/python benchmarks/http_throughput.py --quick        # smoke run, ~15 s
    .venv/bin/python benchmarks/http_throughput.py --levels 1,8 --duration 10 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

SCENARIOS = {
    "agent-wait": "POST /agents/bench/<new id>?wait=result",
    "agent-same": "POST /agents/bench/<worker id>?wait=result (sequential per instance)",
    "workflow-wait": "POST /workflows/bench?wait=result",
    "agent-admit": "POST /agents/bench/<new id> (202 admission only)",
    "agent-shared": "POST /agents/bench/<one id>?wait=result (all workers, one instance)",
}
DEFAULT_SCENARIOS = "agent-wait,agent-same,workflow-wait,agent-admit"
BODY = {"message": "hi"}


def factory(scenario: str, tag: str) -> tuple[bk.RequestFactory, int]:
    """(request factory, expected status) for a scenario; ``tag`` keeps instance ids unique per cell."""
    if scenario == "agent-wait":
        return (lambda w, n: (f"/agents/bench/d{tag}-{w}-{n}?wait=result", BODY)), 200
    if scenario == "agent-same":
        return (lambda w, n: (f"/agents/bench/s{tag}-{w}?wait=result", BODY)), 200
    if scenario == "agent-shared":
        return (lambda w, n: (f"/agents/bench/shared{tag}?wait=result", BODY)), 200
    if scenario == "workflow-wait":
        return (lambda w, n: ("/workflows/bench?wait=result", BODY)), 200
    if scenario == "agent-admit":
        return (lambda w, n: (f"/agents/bench/a{tag}-{w}-{n}", BODY)), 202
    raise SystemExit(f"unknown scenario {scenario!r} (choose from {', '.join(SCENARIOS)})")


def py_spy_binary() -> str:
    found = shutil.which("py-spy") or str(Path(bk.PYTHON).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("--py-spy needs py-spy (.venv/bin/pip install py-spy)")
    return found


class Servers:
    """The model server (started once) and the current Flue server (restarted on demand)."""

    def __init__(self, args: argparse.Namespace, workdir: Path):
        self.args = args
        self.workdir = workdir
        self.model: bk.Proc | None = None
        self.model_url = ""
        self.flue: bk.Proc | None = None
        self.base_url = ""
        self.starts = 0
        self.cold: list[dict[str, float]] = []
        pin = args.pin
        self.server_cpus = {0} if pin else None
        self.side_cpus = {1} if pin else None

    def start_model(self) -> None:
        self.model, self.model_url = bk.start_model_server(cpus=self.side_cpus)

    async def model_calls(self, session: Any) -> int:
        async with session.get(self.model_url.removesuffix("/v1") + "/bench/stats") as resp:
            return int((await resp.json())["calls"])

    async def restart_flue(self, session: Any, label: str) -> None:
        self.stop_flue()
        self.starts += 1
        root = self.workdir / f"project-{self.starts}"
        db = root / ".flue" / "state.db" if self.args.persistence == "file" else None
        coordinator = {"poll": self.args.poll} if self.args.poll else None
        bk.write_project(root, self.model_url, db_path=db, tools=self.args.tools, coordinator=coordinator)
        wrap: list[str] = []
        if self.args.profile:
            prof = Path(self.args.profile) / f"{label}.prof"
            prof.parent.mkdir(parents=True, exist_ok=True)
            wrap = [bk.PYTHON, "-m", "cProfile", "-o", str(prof)]
        spy: list[str] = []
        if self.args.py_spy:
            out = Path(self.args.py_spy) / f"{label}.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            spy = [py_spy_binary(), "record", "--format", "raw", "--full-filenames", "--rate", "200", "--output", str(out), "--"]
        t0 = time.perf_counter()
        self.flue, self.base_url = bk.start_flue_server(root, cpus=self.server_cpus, wrap=wrap, spy=spy)
        listening = time.perf_counter() - t0
        # the first prompt imports litellm in the server: measure it, keep it out of the tables
        t1 = time.perf_counter()
        async with session.post(f"{self.base_url}/agents/bench/prime?wait=result", json=BODY) as resp:
            await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"priming prompt failed: {resp.status}")
        first = time.perf_counter() - t1
        t2 = time.perf_counter()
        async with session.post(f"{self.base_url}/workflows/bench?wait=result", json=BODY) as resp:
            await resp.read()
        self.cold.append({"listening_s": listening, "first_prompt_s": first, "first_run_s": time.perf_counter() - t2})

    def stop_flue(self) -> None:
        if self.flue is not None:
            # cProfile writes its file on a clean exit: give it the time
            self.flue.stop(term_timeout=60 if self.args.profile or self.args.py_spy else 15)
            if self.flue.popen.returncode not in (0, None) and self.args.verbose:
                print(self.flue.log()[-2000:], file=sys.stderr)
            self.flue = None

    def stop_all(self) -> None:
        try:
            self.stop_flue()
        finally:
            if self.model is not None:
                self.model.stop()
                self.model = None


async def run_cell(
    servers: Servers, session: Any, scenario: str, concurrency: int, args: argparse.Namespace
) -> bk.CellResult:
    tag = uuid.uuid4().hex[:8]
    make, expect = factory(scenario, tag)
    if args.warmup > 0:
        warm, _ = factory(scenario, tag + "w")
        await bk.drive(session, servers.base_url, warm, concurrency=concurrency, duration=args.warmup,
                       max_requests=None, expect=expect)
        if scenario == "agent-admit":
            await settle_backlog(servers, session, args.drain_timeout)
    assert servers.flue is not None and servers.model is not None
    cpu0, mcpu0 = bk.cpu_seconds(servers.flue.target_pid), bk.cpu_seconds(servers.model.pid)
    lcpu0 = time.process_time()
    others = bk.OtherLoad()
    others.start()
    calls0 = await servers.model_calls(session)
    lat, errors, samples, elapsed = await bk.drive(
        session, servers.base_url, make, concurrency=concurrency,
        duration=None if args.requests else args.duration, max_requests=args.requests or None, expect=expect,
    )
    cpu1, mcpu1 = bk.cpu_seconds(servers.flue.target_pid), bk.cpu_seconds(servers.model.pid)
    lcpu1 = time.process_time()
    other_cpu = others.stop((cpu1 - cpu0) + (mcpu1 - mcpu0) + (lcpu1 - lcpu0))
    calls1 = await servers.model_calls(session)
    cell = bk.summarize(bk.CellResult(scenario=scenario, concurrency=concurrency), lat, errors, samples, elapsed)
    cell.extra["other_cpu"] = other_cpu
    n = max(cell.requests, 1)
    cell.server_cpu_ms_per_req = (cpu1 - cpu0) * 1000 / n
    cell.model_cpu_ms_per_req = (mcpu1 - mcpu0) * 1000 / n
    cell.extra["loadgen_cpu_ms_per_req"] = (lcpu1 - lcpu0) * 1000 / n
    cell.extra["model_calls"] = calls1 - calls0
    cell.extra["server_cpu_util"] = (cpu1 - cpu0) / elapsed if elapsed else 0.0
    cell.extra["server_rss_mib"] = bk.rss_bytes(servers.flue.target_pid) / 2**20
    if scenario == "agent-admit":
        # how much of the admitted work the server got through while it was also admitting
        cell.extra["processed_during_window"] = calls1 - calls0
        cell.extra["backlog_at_end"] = cell.ok - (calls1 - calls0)
    return cell


async def settle_backlog(servers: Servers, session: Any, timeout: float) -> None:
    """Wait until the model server stops receiving calls (admitted prompts have run), at most ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = await servers.model_calls(session)
    while time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        now = await servers.model_calls(session)
        if now == last:
            return
        last = now


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    for s in scenarios:
        factory(s, "x")
    levels = bk.parse_int_list(args.levels)
    if args.pin:
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="flue-bench-"))
    servers = Servers(args, workdir)
    results: list[bk.CellResult] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    try:
        servers.start_model()
        async with aiohttp.ClientSession(connector=connector) as session:
            for scenario in scenarios:
                per_cell = scenario == "agent-admit" and args.server_per != "run"
                for i, level in enumerate(levels):
                    fresh = (
                        servers.flue is None
                        or args.server_per == "cell"
                        or per_cell
                        or (args.server_per == "scenario" and i == 0)
                    )
                    if fresh:
                        await servers.restart_flue(session, f"{scenario}-c{level}")
                    if args.wait_quiet:
                        assert servers.flue is not None and servers.model is not None
                        pids = [servers.flue.target_pid, servers.model.pid]
                        await asyncio.to_thread(bk.wait_quiet, args.wait_quiet, pids)
                    cell = await run_cell(servers, session, scenario, level, args)
                    results.append(cell)
                    print(
                        f"  {scenario:<14} c={level:<3} {cell.rps:8.1f} req/s  p50 {bk.fmt(cell.p50_ms)} ms"
                        f"  p99 {bk.fmt(cell.p99_ms)} ms  errors {cell.error_count}",
                        file=sys.stderr, flush=True,
                    )
                    for sample in cell.error_samples[:2]:
                        print(f"      error: {sample}", file=sys.stderr)
                    if scenario == "agent-admit" and args.server_per == "run":
                        await settle_backlog(servers, session, args.drain_timeout)
    finally:
        servers.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return {"cells": results, "cold": servers.cold}


def report(args: argparse.Namespace, info: dict[str, Any], data: dict[str, Any]) -> None:
    cells: list[bk.CellResult] = data["cells"]
    headers = ["scenario", "conc", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
               "srv CPU ms/req", "srv CPU %", "model CPU ms/req", "client CPU ms/req", "other CPU %"]
    rows = [
        [c.scenario, c.concurrency, c.requests, c.error_count, c.rps, c.p50_ms, c.p90_ms, c.p99_ms, c.max_ms,
         c.server_cpu_ms_per_req, c.extra.get("server_cpu_util", 0.0) * 100, c.model_cpu_ms_per_req,
         c.extra.get("loadgen_cpu_ms_per_req", float("nan")), c.extra.get("other_cpu", float("nan")) * 100]
        for c in cells
    ]
    print()
    bk.print_machine(info)
    mode = f"{args.requests} requests" if args.requests else f"{args.duration:g} s"
    print(
        f"settings: {mode} per level after {args.warmup:g} s warm-up; persistence {args.persistence}; "
        f"agent tools {args.tools}; coordinator poll {args.poll or 'default'}; server per {args.server_per}; pinned {'yes' if args.pin else 'no'}"
        f"{'; PROFILED (cProfile)' if args.profile else ''}{'; PROFILED (py-spy)' if args.py_spy else ''}"
    )
    print()
    print(bk.table(headers, rows, markdown=args.markdown))
    admits = [c for c in cells if c.scenario == "agent-admit"]
    if admits:
        print()
        print("agent-admit: prompts the server completed in the background during the admission window")
        print(bk.table(
            ["conc", "admitted", "completed", "backlog at end"],
            [[c.concurrency, c.ok, c.extra["processed_during_window"], c.extra["backlog_at_end"]] for c in admits],
            markdown=args.markdown,
        ))
    if data["cold"]:
        cold = data["cold"]
        print()
        print(
            f"cold start ({len(cold)} server starts): listening after "
            f"{min(c['listening_s'] for c in cold):.2f}-{max(c['listening_s'] for c in cold):.2f} s; "
            f"first prompt {min(c['first_prompt_s'] for c in cold):.2f}-{max(c['first_prompt_s'] for c in cold):.2f} s; "
            f"first workflow run {min(c['first_run_s'] for c in cold) * 1000:.0f}-"
            f"{max(c['first_run_s'] for c in cold) * 1000:.0f} ms"
        )
    total_errors = sum(c.error_count for c in cells)
    if total_errors:
        print(f"\n{total_errors} request(s) failed; samples:")
        for c in cells:
            for s in c.error_samples:
                print(f"  [{c.scenario} c={c.concurrency}] {s}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description="HTTP throughput and latency of flue start against a zero-latency scripted model server."
    )
    parser.add_argument("--levels", default="1,4,16,64", help="concurrency levels (default: 1,4,16,64)")
    parser.add_argument("--scenarios", default=DEFAULT_SCENARIOS, help=f"comma-separated, from: {', '.join(SCENARIOS)}")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per level (default: 4)")
    parser.add_argument("--requests", type=int, default=0, help="measure this many requests per level instead")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per level, discarded (default: 1)")
    parser.add_argument("--persistence", choices=["memory", "file"], default="memory",
                        help="SQLite in memory (the default of a project) or a file in the scratch project")
    parser.add_argument("--tools", choices=["default", "none"], default="default",
                        help="the agent's tools: Flue's default built-ins, or 'tools: []'")
    parser.add_argument("--server-per", choices=["run", "scenario", "cell"], default="scenario",
                        help="restart flue start per scenario (default), per level, or never; agent-admit "
                             "gets a fresh server per level unless 'run'")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="with --server-per run, seconds to wait for admitted prompts to finish")
    parser.add_argument("--poll", type=float, default=None,
                        help="coordinator poll interval in flue.yaml (default: Flue's, 0.5 s)")
    parser.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                        help="before each level, wait up to S seconds for other processes to go idle "
                             "(for shared machines; the 'other CPU' column shows what remained)")
    parser.add_argument("--pin", action="store_true",
                        help="pin flue start to CPU 0, the model server and load generator to CPU 1")
    parser.add_argument("--profile", metavar="DIR", help="run flue start under cProfile, one .prof per server")
    parser.add_argument("--py-spy", metavar="DIR",
                        help="run flue start under 'py-spy record' (collapsed stacks, one .txt per server); "
                             "summarize with benchmarks/profile_summary.py")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (levels 1,4; short)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--markdown", action="store_true", help="print tables as Markdown")
    parser.add_argument("--keep", action="store_true", help="keep the scratch projects (and their logs)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.levels, args.duration, args.warmup, args.requests = "1,4", 0.5, 0.2, 0
        args.server_per, args.drain_timeout = "run", 5.0
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(), 2)
    started = time.monotonic()
    noise = bk.RunNoise()
    with contextlib.suppress(KeyboardInterrupt):
        data = asyncio.run(main_async(args))
    if "data" not in locals():
        return 130
    info["other_cpu_during"] = round(noise.stop(), 2)
    report(args, info, data)
    print(f"\n(total wall time {time.monotonic() - started:.0f} s)")
    bk.write_json(args.json, {
        "benchmark": "http_throughput",
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("json",)},
        "cells": [c.as_dict() for c in data["cells"]],
        "cold_start": data["cold"],
    })
    return 1 if any(c.error_count for c in data["cells"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
