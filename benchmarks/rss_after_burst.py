"""Memory after a burst of large requests: does a ``flue start`` server give it back?

The zero-latency scripted model server and ``flue start`` on a scratch project
(file SQLite) run as subprocesses. After a warm-up (one small and one large
request of each kind), the server's ``VmRSS`` is the baseline. Then a burst of N
(default 50) requests of about 10 MiB each, alternating

- ``POST /workflows/bench?wait=result`` with a 10 MiB JSON payload (kept in the run
  record and its ``run_start`` event, on disk), and
- ``POST /agents/bench/<new id>?wait=result`` with one 10 MiB image (base64; it goes
  into the session history and to the model),

``--concurrency`` at a time. RSS is sampled during the burst (peak) and every
second of the ``--idle`` seconds that follow (default 30). The issue's target:
RSS at the end of the idle time within 50 MiB of the baseline (exit 1 otherwise).

    .venv/bin/python benchmarks/rss_after_burst.py            # ~1 minute
    .venv/bin/python benchmarks/rss_after_burst.py --requests 10 --idle 5
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

MIB = 2**20
TARGET_MIB = 50


def bodies(size: int) -> tuple[bytes, bytes]:
    """(workflow body, agent body) of about ``size`` bytes each, encoded once."""
    workflow = json.dumps({"message": "hi", "blob": "a" * size}).encode()
    raw = (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (size // 256 + 1))[: size * 3 // 4]
    image = {"type": "image", "data": base64.b64encode(raw).decode(), "mimeType": "image/png"}
    agent = json.dumps({"message": "Describe the image.", "images": [image]}).encode()
    return workflow, agent


async def burst(session: Any, base: str, n: int, concurrency: int, size: int, pid: int) -> tuple[int, int, float]:
    """Send ``n`` large requests; return (errors, peak RSS, seconds)."""
    workflow, agent = bodies(size)
    queue = list(range(n))
    errors, peak = 0, bk.rss_bytes(pid)
    tag = uuid.uuid4().hex[:6]

    async def worker() -> None:
        nonlocal errors
        while queue:
            i = queue.pop()
            url, body = ((f"{base}/workflows/bench?wait=result", workflow) if i % 2 == 0
                         else (f"{base}/agents/bench/big{tag}-{i}?wait=result", agent))
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    print(f"  request {i}: {resp.status} {(await resp.text())[:300]}", file=sys.stderr)

    async def sampler() -> None:
        nonlocal peak
        while True:
            peak = max(peak, bk.rss_bytes(pid))
            await asyncio.sleep(0.1)

    t0 = time.perf_counter()
    watch = asyncio.create_task(sampler())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        watch.cancel()
    return errors, peak, time.perf_counter() - t0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    size = args.size_mib * MIB
    with bk.served_project("flue-bench-rss-", "file", "none") as served:
        pid, base = served.pid, served.base
        timeout = aiohttp.ClientTimeout(total=300)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            warm_errors, _, _ = await burst(session, base, 2, 1, size, pid)  # one large request of each kind
            for path, body in (("/workflows/bench?wait=result", {"message": "hi"}),
                               (f"/agents/bench/warm-{uuid.uuid4().hex[:6]}?wait=result", {"message": "hi"})):
                async with session.post(base + path, json=body) as resp:
                    await resp.read()
            await asyncio.sleep(3)
            baseline = bk.rss_bytes(pid)
            print(f"  baseline RSS {baseline / MIB:.1f} MiB; sending {args.requests} x {args.size_mib} MiB",
                  file=sys.stderr)
            errors, peak, seconds = await burst(session, base, args.requests, args.concurrency, size, pid)
            samples = []
            for second in range(1, args.idle + 1):
                await asyncio.sleep(1)
                samples.append(bk.rss_bytes(pid))
                if second % 10 == 0:
                    print(f"  idle {second} s: RSS {samples[-1] / MIB:.1f} MiB", file=sys.stderr)
    final = samples[-1] if samples else bk.rss_bytes(pid)
    return {
        "requests": args.requests, "size_mib": args.size_mib, "concurrency": args.concurrency,
        "errors": errors + warm_errors, "burst_s": seconds,
        "baseline_mib": baseline / MIB, "peak_mib": peak / MIB, "final_mib": final / MIB,
        "growth_mib": (final - baseline) / MIB, "idle_s": args.idle,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--size-mib", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--idle", type=int, default=30, help="seconds of idle time after the burst")
    parser.add_argument("--json", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    info = bk.machine_info()
    bk.print_machine(info)
    result = asyncio.run(run(args))
    print(f"\n{result['requests']} requests of {result['size_mib']} MiB ({result['concurrency']} at a time) "
          f"in {result['burst_s']:.1f} s, {result['errors']} errors")
    print(f"RSS: baseline {result['baseline_mib']:.1f} MiB, peak {result['peak_mib']:.1f} MiB, "
          f"after {result['idle_s']} s idle {result['final_mib']:.1f} MiB "
          f"({result['growth_mib']:+.1f} MiB; target within {TARGET_MIB} MiB)")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "result": result}, indent=2))
    ok = result["errors"] == 0 and result["growth_mib"] <= TARGET_MIB
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
