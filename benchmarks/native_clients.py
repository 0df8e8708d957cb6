"""CPU per streamed completion of Flue's native model clients, next to raw aiohttp and litellm.

The model is the zero-latency scripted server (benchmarks/model_server.py) in
its own process, so only the client's CPU is counted (this process, all
threads). Each client streams one completion per call into a
``StreamAccumulator`` (what the tool loop does with it, minus events):

- ``aiohttp-raw``:        a streaming ``POST /v1/chat/completions`` read line by line (the floor)
- ``native-completions``: ``flue.models.openai_completions`` (Chat Completions)
- ``native-responses``:   ``flue.models.openai_responses`` (Responses API)
- ``native-anthropic``:   ``flue.models.anthropic_messages`` (Anthropic Messages)
- ``litellm``:            Flue's litellm provider on the same Chat Completions endpoint

Two replies: ``short`` (9 characters, one text delta) and ``long`` (``--long``
characters in 4-character deltas: the per-delta cost). Calls run
``--calls`` times sequentially, and also ``--concurrency`` at once.

    .venv/bin/python benchmarks/native_clients.py            # ~1 min
    .venv/bin/python benchmarks/native_clients.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402
from prompt_layers import measure  # noqa: E402

CLIENTS = ["aiohttp-raw", "native-completions", "native-responses", "native-anthropic", "litellm"]
MESSAGES = [{"role": "user", "content": "hi"}]


def make_call(name: str, url: str, http: Any) -> Callable[[], Awaitable[Any]]:
    from flue.config import ProviderConfig
    from flue.models.base import ModelRequest, StreamAccumulator
    from flue.models.registry import ModelRegistry

    if name == "aiohttp-raw":
        body = {"model": "bench", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

        async def raw() -> None:
            async with http.post(url + "/chat/completions", json=body) as resp:
                async for _line in resp.content:
                    pass

        return raw
    api = {"native-completions": "openai-completions", "native-responses": "openai-responses",
           "native-anthropic": "anthropic-messages", "litellm": "openai-completions"}[name]
    config = ProviderConfig(api=api, base_url=url, api_key="bench-key", via="litellm" if name == "litellm" else None)
    provider = ModelRegistry({"bench": config}).provider("bench")
    request = ModelRequest(provider="bench", model="bench", messages=MESSAGES)

    async def call() -> None:
        acc = StreamAccumulator()
        async for chunk in provider.stream(request):
            acc.add(chunk)
        assert acc.text, "empty reply"

    return call


async def concurrent(call: Callable[[], Awaitable[Any]], calls: int, concurrency: int) -> dict[str, float]:
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            await call()

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    return {"cpu_ms_per_call": cpu * 1000 / calls, "calls_per_s": calls / wall}


async def run_reply(args: argparse.Namespace, label: str, url: str) -> list[dict[str, Any]]:
    import aiohttp

    from flue.models.http import close_client_session

    out = []
    async with aiohttp.ClientSession() as http:
        for name in args.clients:
            if name == "litellm":
                from flue.models.litellm_provider import load_litellm

                await load_litellm()  # the import is not part of a call
            call = make_call(name, url, http)
            print(f"  {label} {name} ...", file=sys.stderr, flush=True)
            seq = await measure(name, call, args.calls, args.warmup)
            conc = await concurrent(call, args.calls, args.concurrency)
            out.append({"reply": label, **seq, "conc_cpu_ms_per_call": conc["cpu_ms_per_call"],
                        "conc_calls_per_s": conc["calls_per_s"]})
    await close_client_session()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description="CPU per streamed completion of the native model clients.")
    parser.add_argument("--clients", default=",".join(CLIENTS), help=f"comma-separated, from: {', '.join(CLIENTS)}")
    parser.add_argument("--calls", type=int, default=500, help="measured calls per client and mode (default: 500)")
    parser.add_argument("--warmup", type=int, default=30, help="discarded calls per client first (default: 30)")
    parser.add_argument("--concurrency", type=int, default=32, help="calls at once in the concurrent run (default: 32)")
    parser.add_argument("--long", type=int, default=800, help="characters of the long reply (default: 800)")
    parser.add_argument("--quick", action="store_true", help="40 calls per client, 5 warm-up")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        raise SystemExit(f"unknown client(s) {', '.join(sorted(unknown))} (choose from {', '.join(CLIENTS)})")
    if args.quick:
        args.calls, args.warmup = 40, 5
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(0.5), 2)
    noise = bk.RunNoise()
    results: list[dict[str, Any]] = []
    long_reply = ("All work and no play makes a dull model. " * (args.long // 40 + 1))[: args.long]
    for label, reply, chunk in (("short", "OK, done.", 16), ("long", long_reply, 4)):
        proc, url = bk.start_model_server(reply=reply, chunk_size=chunk)
        try:
            results += asyncio.run(run_reply(args, label, url))
        finally:
            proc.stop()
    info["other_cpu_during"] = round(noise.stop(), 2)
    print()
    bk.print_machine(info)
    print(f"settings: {args.calls} calls per client, sequential after {args.warmup} warm-up, then "
          f"{args.concurrency} at once; long reply {args.long} chars in 4-char deltas")
    print()
    print(bk.table(
        ["reply", "client", "calls/s", "p50 ms", "CPU ms/call", f"c={args.concurrency} calls/s",
         f"c={args.concurrency} CPU ms/call"],
        [[r["reply"], r["layer"], r["calls_per_s"], r["p50_ms"], r["cpu_ms_per_call"], r["conc_calls_per_s"],
          r["conc_cpu_ms_per_call"]] for r in results],
        markdown=args.markdown,
    ))
    bk.write_json(args.json, {"benchmark": "native_clients", "machine": info, "settings": vars(args),
                              "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
