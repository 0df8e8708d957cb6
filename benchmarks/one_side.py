"""Our server alone on vs_flue.py's project: one scenario, CPU per request and per thread.

For comparing two variants of the server (run it alternately, a few times each: a shared
machine's speed drifts) and for profiling one scenario::

    .venv/bin/python benchmarks/one_side.py plain-c32 --duration 5
    .venv/bin/python benchmarks/one_side.py agent-c32 --py-spy /tmp/agent.txt
    .venv/bin/python benchmarks/profile_summary.py /tmp/agent.txt

Scenarios are vs_flue.py's (``agent-c1``, ``agent-c32``, ``workflow-c32``, ``plain-c32``,
``bash-c32``). The server runs ``flue start`` on file SQLite against ``model_server.py
--script echo``; the load is ``benchkit.RawHTTP``. Printed: req/s, server CPU per request
(its process tree), per thread of the server process, the load generator's CPU, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402
import vs_flue as vf  # noqa: E402


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid`` (``name:tid``)."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat, name = (task / "stat").read_text(), (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[f"{name}:{task.name}"] = (int(fields[11]) + int(fields[12])) / bk.CLK_TCK
    return out


async def measure(args: argparse.Namespace) -> int:
    scenario = vf.BY_NAME[args.scenario]
    work = Path(tempfile.mkdtemp(prefix="flue-one-side-"))
    model, model_url = bk.start_model_server(script="echo")
    spy = ()
    if args.py_spy:
        spy = (shutil.which("py-spy") or str(Path(bk.PYTHON).parent / "py-spy"), "record", "--format", "raw",
               "--full-filenames", "--rate", "250", "--output", args.py_spy, "--")
    server = None
    try:
        root = vf.write_py_project(work / "py", model_url)
        server, base = bk.start_flue_server(root, spy=spy, extra=("--loop", args.loop) if args.loop != "auto" else ())
        pid = server.target_pid or server.pid
        tag = uuid.uuid4().hex[:8]

        def make(w: int, n: int) -> tuple[str, object]:
            return scenario.path.format(id=f"{tag}-{w}-{n}"), scenario.body

        client = bk.RawHTTP(base)
        await bk.drive(client, base, make, concurrency=scenario.concurrency, duration=args.warmup,
                       max_requests=None, expect=200)
        threads0, cpu0, load0 = thread_cpu(pid), vf.tree_cpu(pid), time.process_time()
        lat, errors, samples, elapsed = await bk.drive(
            client, base, make, concurrency=scenario.concurrency, duration=args.duration, max_requests=None,
            expect=200,
        )
        threads1, cpu1, load1 = thread_cpu(pid), vf.tree_cpu(pid), time.process_time()
        client.close()
        n = max(len(lat) + sum(errors.values()), 1)
        cell = bk.summarize(bk.CellResult(scenario=scenario.name, concurrency=scenario.concurrency),
                            lat, errors, samples, elapsed)
        per_thread = {k: round((v - threads0.get(k, 0.0)) * 1000 / n, 3) for k, v in threads1.items()
                      if v - threads0.get(k, 0.0) > 0}
        print(f"{scenario.name}: {cell.rps:.1f} req/s  server CPU {(cpu1 - cpu0) * 1000 / n:.3f} ms/req  "
              f"load generator {(load1 - load0) * 1000 / n:.3f} ms/req  p50 {bk.fmt(cell.p50_ms)} "
              f"p99 {bk.fmt(cell.p99_ms)} ms  errors {dict(errors) or 0}")
        print(f"  per thread, ms/req: {per_thread}")
        for sample in samples[:3]:
            print(f"  error: {sample}")
        if errors:
            print(server.log()[-3000:])
        return 1 if errors else 0
    finally:
        if server is not None:
            server.stop(term_timeout=60 if args.py_spy else 15)
        model.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(vf.BY_NAME))
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="discarded warm-up seconds (default 1)")
    parser.add_argument("--loop", default="auto", choices=("auto", "uvloop", "asyncio"),
                        help="flue start --loop (default auto: uvloop where installed)")
    parser.add_argument("--py-spy", metavar="FILE", help="run the server under 'py-spy record' (raw stacks to FILE)")
    return asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
