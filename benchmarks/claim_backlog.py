"""Cost of claiming the next submission as the admitted backlog grows (SQLite persistence, in process).

Admits prompts to distinct instances of the benchmark agent through the
runtime's coordinator (not started, so nothing runs and the backlog stays
queued), and at each checkpoint times ``SubmissionStore.claim_next`` (what the
coordinator calls before every submission it runs) against a trivial store
call (``get`` of a missing id) that costs the same thread hop. Also times
``admit`` at the largest backlog. No model is called.

    .venv/bin/python benchmarks/claim_backlog.py             # backlog 10 .. 20,000, ~30 s
    .venv/bin/python benchmarks/claim_backlog.py --quick     # 10 and 1,000
    .venv/bin/python benchmarks/claim_backlog.py --persistence file
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402


async def timed(fn: Any, n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        await fn()
    return (time.perf_counter() - t0) / n * 1000


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from flue.project import load_project
    from flue.runtime.instances import prompt_input
    from flue.runtime.runtime import Runtime

    workdir = Path(tempfile.mkdtemp(prefix="flue-bench-claim-"))
    rows: list[dict[str, Any]] = []
    try:
        root = workdir / "project"
        db = root / ".flue" / "state.db" if args.persistence == "file" else None
        # the backlog is the subject here: lift the admission bound (coordinator.max_queued)
        bk.write_project(root, "http://127.0.0.1:9/v1", db_path=db,
                         coordinator={"max_queued": max(args.backlog) + args.samples + 10})
        runtime = await Runtime.open(load_project(root))
        try:
            coordinator, store = runtime.coordinator, runtime.stores.submissions
            admitted = 0
            for target in args.backlog:
                t0 = time.perf_counter()
                while admitted < target:
                    await coordinator.admit("bench", f"i{admitted}", prompt_input("hi"))
                    admitted += 1
                fill_s = time.perf_counter() - t0
                # each claim takes one queued head (of another instance); claimed ones stay active
                # (running, leased), so the rows a claim looks at are still all `target` of them
                claim_ms = await timed(lambda: store.claim_next("bench-owner"), args.samples)
                trivial_ms = await timed(lambda: store.get("sub_missing"), args.samples)
                rows.append({"queued": target, "claim_next_ms": claim_ms,
                             "trivial_call_ms": trivial_ms, "fill_s": fill_s})
                print(f"  backlog {target}: claim_next {claim_ms:.2f} ms", file=sys.stderr)
            admit_ms = await timed(
                lambda: coordinator.admit("bench", f"x{time.perf_counter_ns()}", prompt_input("hi")), args.samples
            )
            rows[-1]["admit_ms"] = admit_ms
        finally:
            await runtime.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description="claim_next cost vs. the number of queued submissions.")
    parser.add_argument("--backlog", default="10,1000,5000,20000", help="queued submissions at each checkpoint")
    parser.add_argument("--samples", type=int, default=20, help="timed calls per checkpoint (default: 20)")
    parser.add_argument("--persistence", choices=["memory", "file"], default="memory")
    parser.add_argument("--quick", action="store_true", help="backlog 10,1000")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.backlog = "10,1000"
    args.backlog = sorted(set(bk.parse_int_list(args.backlog)))
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(0.5), 2)
    noise = bk.RunNoise()
    rows = asyncio.run(run(args))
    info["other_cpu_during"] = round(noise.stop(), 2)
    print()
    bk.print_machine(info)
    print(f"settings: SQLite {args.persistence}; {args.samples} timed calls per checkpoint")
    print()
    print(bk.table(
        ["active submissions", "claim_next ms", "trivial store call ms"],
        [[r["queued"], f"{r['claim_next_ms']:.2f}", f"{r['trivial_call_ms']:.2f}"] for r in rows],
        markdown=args.markdown,
    ))
    print(f"\nadmit with {rows[-1]['queued']:,} active: {rows[-1]['admit_ms']:.2f} ms per admission")
    bk.write_json(args.json, {"benchmark": "claim_backlog", "machine": info, "settings": vars(args), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
