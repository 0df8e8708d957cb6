"""Latency of a long-lived agent instance as its history grows.

One instance ``/agents/bench/<id>`` of a real ``flue start`` server is prompted
sequentially (``?wait=result``) ``--prompts`` times; each prompt adds a user
and an assistant message to the instance's session. Reported per bucket of
``--bucket`` prompts: p50/p99 latency, the server's CPU per prompt and its
RSS, so a cost that grows with history (re-reading and re-writing the whole
session, re-sending it to the model) shows as a slope. The model is the
zero-latency scripted server, as in http_throughput.py.

    .venv/bin/python benchmarks/history_growth.py                        # 600 prompts, ~1 minute
    .venv/bin/python benchmarks/history_growth.py --quick                # 60 prompts
    .venv/bin/python benchmarks/history_growth.py --persistence file --prompts 2000 --bucket 250
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

BODY = {"message": "hi"}


async def run(args: argparse.Namespace, persistence: str) -> dict[str, Any]:
    import aiohttp

    with bk.served_project("flue-bench-history-", persistence, args.tools) as served:
        base, pid = served.base, served.pid
        buckets: list[dict[str, Any]] = []
        errors = 0
        async with aiohttp.ClientSession() as session:
            for i in range(10):  # warm-up on other instances (litellm import, first-use caches)
                async with session.post(f"{base}/agents/bench/warm{i}?wait=result", json=BODY) as resp:
                    await resp.read()
            lat: list[float] = []
            cpu0, first = bk.cpu_seconds(pid), 1
            for n in range(1, args.prompts + 1):
                t0 = time.perf_counter()
                async with session.post(f"{base}/agents/bench/long-lived?wait=result", json=BODY) as resp:
                    await resp.read()
                    ok = resp.status == 200
                if ok:
                    lat.append(time.perf_counter() - t0)
                else:
                    errors += 1
                if n % args.bucket == 0 or n == args.prompts:
                    cpu1 = bk.cpu_seconds(pid)
                    values = sorted(lat)
                    buckets.append({
                        "prompts": f"{first}-{n}",
                        "history_messages": 2 * n, "p50_ms": bk.percentile(values, 50) * 1000,
                        "p99_ms": bk.percentile(values, 99) * 1000,
                        "server_cpu_ms_per_prompt": (cpu1 - cpu0) * 1000 / max(len(lat), 1),
                        "rss_mib": bk.rss_bytes(pid) / 2**20,
                    })
                    print(f"  {persistence}: {n} prompts, p50 {buckets[-1]['p50_ms']:.1f} ms", file=sys.stderr)
                    lat, cpu0, first = [], cpu1, n + 1
        return {"persistence": persistence, "buckets": buckets, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description="Latency of one agent instance as its history grows.")
    parser.add_argument("--prompts", type=int, default=600, help="sequential prompts to the one instance")
    parser.add_argument("--bucket", type=int, default=100, help="prompts per reported row")
    parser.add_argument("--persistence", choices=["memory", "file", "both"], default="both")
    parser.add_argument("--tools", choices=["default", "none"], default="default", help="the agent's tools")
    parser.add_argument("--quick", action="store_true", help="60 prompts in buckets of 20, memory only")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.bucket, args.persistence = 60, 20, "memory"
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(0.5), 2)
    modes = ["memory", "file"] if args.persistence == "both" else [args.persistence]
    noise = bk.RunNoise()
    results = [asyncio.run(run(args, m)) for m in modes]
    info["other_cpu_during"] = round(noise.stop(), 2)
    print()
    bk.print_machine(info)
    for res in results:
        print(f"\npersistence {res['persistence']}: one instance, sequential prompts (errors {res['errors']})")
        print(bk.table(
            ["prompts", "history msgs", "p50 ms", "p99 ms", "srv CPU ms/prompt", "RSS MiB"],
            [[b["prompts"], b["history_messages"], b["p50_ms"], b["p99_ms"], b["server_cpu_ms_per_prompt"],
              b["rss_mib"]] for b in res["buckets"]],
            markdown=args.markdown,
        ))
    bk.write_json(args.json, {"benchmark": "history_growth", "machine": info, "settings": vars(args),
                              "results": results})
    return 1 if any(r["errors"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
