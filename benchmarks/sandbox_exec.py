"""Cost of one virtual-sandbox command: in a worker process (today) vs. in process (before).

Since issue 19 the virtual sandbox runs commands in worker processes it can
kill (see ``flue.sandbox.pool``); before, each command ran on bashkit's
threads inside the server. This script measures, in one process with no
server and no model, per command:

- ``wall``: p50 / p90 latency of ``await env.exec(...)``;
- ``cpu here``: CPU of this process (the server's side: framing, applying
  the changes a command reports);
- ``cpu worker``: CPU of the worker processes (bashkit, the change report).

``inproc`` is the old code path rebuilt from bashkit directly (a fresh shell
mounted over the env's filesystem, output streamed into tail buffers), so
both columns come from the same bashkit version on the same machine.

Scenarios: ``echo`` (nothing changes), ``write`` (one file changes),
``big-fs`` (reading one file of a 1 MB, 200-file workspace), ``first`` (the
first command of a fresh env: its replica is opened from a snapshot), and
``local`` (``echo hi`` in the local sandbox: ``inproc`` is the old direct
``asyncio.create_subprocess_exec`` of bash, ``worker`` the launcher process
that now starts every local command).

    .venv/bin/python benchmarks/sandbox_exec.py [--quick] [-n 300] [--json FILE] [--markdown]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import CLK_TCK, machine_info, print_machine  # noqa: E402

from flue.sandbox.base import SandboxRequest  # noqa: E402
from flue.sandbox.output import TailBuffer  # noqa: E402
from flue.sandbox.pool import pool  # noqa: E402
from flue.sandbox.virtual import VirtualSandboxEnv, make_virtual_factory  # noqa: E402

SCENARIOS = {
    "echo": "echo hi",
    "write": "echo $RANDOM > out.txt",
    "big-fs": "cat notes/n7.txt | wc -c",
}


def helper_pids() -> list[int]:
    from flue.sandbox import local

    pids = [w.pid for w in list(pool().workers)]
    if local._launcher is not None:
        pids.append(local._launcher.pid)
    return pids


def worker_cpu_s() -> float:
    """CPU of the helpers (workers, the local launcher) and their finished children."""
    total = 0
    for pid in helper_pids():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return total / CLK_TCK


async def new_env(files: dict[str, str] | None = None) -> VirtualSandboxEnv:
    return await make_virtual_factory({}).create_session_env(SandboxRequest(id="bench", files=files or {}))


async def inproc_exec(env: VirtualSandboxEnv, command: str) -> None:
    """The pre-worker exec: a fresh bashkit shell over the env's filesystem, in this process."""
    import bashkit

    shell = bashkit.Bash(
        cwd=env.cwd, env={}, timeout_seconds=120, profile=bashkit.ExecutionProfile.Interactive,
        network=None, python=False, sqlite=False,
    )
    shell.mount("/", env._fs)
    out, err = TailBuffer(), TailBuffer()
    await shell.execute(command, stdout=out.awrite, stderr=err.awrite)
    out.text(), err.text()


async def direct_local_exec(cwd: str, command: str) -> None:
    """The pre-launcher local exec: bash straight from this process."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    await proc.communicate()


async def measure(mode: str, scenario: str, n: int) -> dict[str, Any]:
    if scenario == "local":
        from flue.sandbox.local import make_local_factory

        local_env = await make_local_factory({}).create_session_env(SandboxRequest(id="bench", cwd="/tmp"))
        run = (lambda i: local_env.exec("echo hi")) if mode == "worker" else (lambda i: direct_local_exec("/tmp", "echo hi"))
        return await timed(mode, scenario, n, run, children=True)
    files = {f"notes/n{i}.txt": ("x" * 79 + "\n") * 64 for i in range(200)} if scenario == "big-fs" else None
    if scenario == "first":
        envs = [await new_env() for _ in range(n)]
        await (await new_env()).exec("true")  # a worker is running: measure the replica, not the spawn
        run = (lambda i: envs[i].exec("echo hi")) if mode == "worker" else (lambda i: inproc_exec(envs[i], "echo hi"))
    else:
        env = await new_env(files)
        command = SCENARIOS[scenario]
        run = (lambda i: env.exec(command)) if mode == "worker" else (lambda i: inproc_exec(env, command))
        for i in range(min(20, n)):
            await run(i)  # warm-up: the worker, the replica, bashkit's runtime
    return await timed(mode, scenario, n, run)


async def timed(mode: str, scenario: str, n: int, run: Any, *, children: bool = False) -> dict[str, Any]:
    """``children``: this process's own CPU includes its finished children (the old local exec)."""
    walls: list[float] = []
    if children:
        for i in range(min(20, n)):
            await run(i)

    def here() -> float:
        t = os.times()
        return t.user + t.system + (t.children_user + t.children_system if children else 0.0)

    c0, w0 = here(), worker_cpu_s()
    for i in range(n):
        t = time.perf_counter()
        await run(i)
        walls.append(time.perf_counter() - t)
    cpu_here = here() - c0
    cpu_worker = worker_cpu_s() - w0
    walls.sort()
    return {
        "mode": mode,
        "scenario": scenario,
        "n": n,
        "wall_p50_ms": round(statistics.median(walls) * 1e3, 3),
        "wall_p90_ms": round(walls[int(len(walls) * 0.9) - 1] * 1e3, 3),
        "cpu_here_ms": round(cpu_here / n * 1e3, 3),
        "cpu_worker_ms": round(cpu_worker / n * 1e3, 3),
    }


def worker_rss_kib() -> list[int]:
    out = []
    for w in list(pool().workers):
        try:
            for line in Path(f"/proc/{w.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    out.append(int(line.split()[1]))
        except OSError:
            pass
    return out


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    for scenario in args.scenarios:
        for mode in ("inproc", "worker"):
            rows.append(await measure(mode, scenario, args.n))
    rows.append({"worker_rss_kib": worker_rss_kib()})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=300, help="commands per measurement")
    ap.add_argument("--scenarios", nargs="+", default=[*SCENARIOS, "first", "local"])
    ap.add_argument("--quick", action="store_true", help="20 commands each")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.n = 20
    info = machine_info()
    print_machine(info)
    rows = asyncio.run(main_async(args))
    cols = ["scenario", "mode", "n", "wall_p50_ms", "wall_p90_ms", "cpu_here_ms", "cpu_worker_ms"]
    sep = " | " if args.markdown else "  "
    print(sep.join(cols))
    if args.markdown:
        print(sep.join("---" for _ in cols))
    for r in rows[:-1]:
        print(sep.join(str(r[c]) for c in cols))
    print(f"worker RSS (KiB): {rows[-1]['worker_rss_kib']}")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    pool().shutdown()
    os._exit(0)


if __name__ == "__main__":
    raise SystemExit(main())
