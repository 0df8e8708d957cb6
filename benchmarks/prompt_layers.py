"""Where a prompt's time goes: the same one-turn prompt through successively more layers, in process.

The model is the zero-latency scripted OpenAI-compatible server
(benchmarks/model_server.py) in its own process, except for ``harness-inproc``,
which uses Flue's in-process ScriptedModel (no HTTP, no litellm). Layers:

- ``aiohttp-raw``:   one streaming ``POST /v1/chat/completions`` with aiohttp, chunks read (the HTTP floor)
- ``openai-sdk``:    the same through ``openai.AsyncOpenAI`` (what litellm uses underneath)
- ``litellm``:       the same through Flue's ``LiteLLMProvider.stream`` (``litellm.acompletion``)
- ``harness-inproc``: ``init()`` of the project's agent with its virtual (bashkit) sandbox and a
  fresh prompt with the in-process ScriptedModel: Flue's harness alone
- ``harness-litellm``: ``init()`` + ``session.prompt`` through litellm to the model server:
  what the server's coordinator does per submission, minus persistence, events to SQLite and HTTP

Each layer runs ``--calls`` sequential calls after ``--warmup`` discarded ones
and reports wall time and this process's CPU time (all threads) per call.

    .venv/bin/python benchmarks/prompt_layers.py            # ~30 s
    .venv/bin/python benchmarks/prompt_layers.py --quick    # a few seconds
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchkit as bk  # noqa: E402

LAYERS = ["aiohttp-raw", "openai-sdk", "litellm", "harness-inproc", "harness-litellm"]
MESSAGES = [{"role": "user", "content": "hi"}]


async def measure(name: str, call: Callable[[], Awaitable[Any]], calls: int, warmup: int) -> dict[str, Any]:
    for _ in range(warmup):
        await call()
    walls: list[float] = []
    cpu0 = time.process_time()
    t_start = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter()
        await call()
        walls.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    cpu = time.process_time() - cpu0
    walls.sort()
    return {
        "layer": name, "calls": calls, "mean_ms": sum(walls) / calls * 1000,
        "p50_ms": bk.percentile(walls, 50) * 1000, "p99_ms": bk.percentile(walls, 99) * 1000,
        "cpu_ms_per_call": cpu * 1000 / calls, "calls_per_s": calls / elapsed,
    }


async def main_async(args: argparse.Namespace) -> list[dict[str, Any]]:
    import aiohttp

    layers = [s.strip() for s in args.layers.split(",") if s.strip()]
    unknown = set(layers) - set(LAYERS)
    if unknown:
        raise SystemExit(f"unknown layer(s) {', '.join(sorted(unknown))} (choose from {', '.join(LAYERS)})")
    model_proc, url = bk.start_model_server()
    workdir = Path(tempfile.mkdtemp(prefix="flue-bench-layers-"))
    results: list[dict[str, Any]] = []
    try:
        root = bk.write_project(workdir / "project", url, tools=args.tools)
        async with aiohttp.ClientSession() as http:
            body = {"model": "bench", "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}

            async def raw() -> None:
                async with http.post(url + "/chat/completions", json=body) as resp:
                    async for _line in resp.content:
                        pass

            for layer in layers:
                if layer == "aiohttp-raw":
                    call: Callable[[], Awaitable[Any]] = raw
                elif layer == "openai-sdk":
                    import openai

                    client = openai.AsyncOpenAI(base_url=url, api_key="bench-key")

                    async def sdk(client: Any = client) -> None:
                        stream = await client.chat.completions.create(
                            model="bench", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
                        )
                        async for _chunk in stream:
                            pass

                    call = sdk
                elif layer == "litellm":
                    from flue.config import ProviderConfig
                    from flue.models.base import ModelRequest
                    from flue.models.litellm_provider import LiteLLMProvider

                    provider = LiteLLMProvider(
                        "scripted", ProviderConfig(api="openai-completions", base_url=url, api_key="bench-key")
                    )
                    request = ModelRequest(provider="scripted", model="bench", messages=MESSAGES)

                    async def lite(provider: Any = provider, request: Any = request) -> None:
                        async for _chunk in provider.stream(request):
                            pass

                    call = lite
                else:
                    call = await harness_call(root, inproc=layer == "harness-inproc")
                print(f"  {layer} ...", file=sys.stderr, flush=True)
                results.append(await measure(layer, call, args.calls, args.warmup))
    finally:
        model_proc.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


async def harness_call(root: Path, *, inproc: bool) -> Callable[[], Awaitable[Any]]:
    from model_server import EndlessScript

    import flue
    from flue.testing.scripted import ScriptedModel, ScriptedTurn

    project = flue.load_project(root)
    model: Any = None
    if inproc:
        model = ScriptedModel()
        model.script = EndlessScript(ScriptedTurn(text="OK, done.", chunk_size=16))
    counter = 0

    async def call() -> None:
        nonlocal counter
        counter += 1
        # like the coordinator: a fresh harness per prompt, scoped to its instance
        harness = await flue.init("bench", project=project, model=model, scope=f"agents/bench/i{counter}")
        session = await harness.session()
        await session.prompt("hi")
        await harness.close()

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description="Per-call cost of each layer a Flue prompt goes through.")
    parser.add_argument("--layers", default=",".join(LAYERS), help=f"comma-separated, from: {', '.join(LAYERS)}")
    parser.add_argument("--calls", type=int, default=300, help="measured calls per layer (default: 300)")
    parser.add_argument("--warmup", type=int, default=20, help="discarded calls per layer first (default: 20)")
    parser.add_argument("--tools", choices=["default", "none"], default="default", help="the agent's tools")
    parser.add_argument("--quick", action="store_true", help="30 calls per layer, 3 warm-up")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.warmup = 30, 3
    info = bk.machine_info()
    info["other_cpu_before"] = round(bk.quiet_check(0.5), 2)
    noise = bk.RunNoise()
    results = asyncio.run(main_async(args))
    info["other_cpu_during"] = round(noise.stop(), 2)
    print()
    bk.print_machine(info)
    print(f"settings: {args.calls} sequential calls per layer after {args.warmup} warm-up; agent tools {args.tools}")
    print()
    print(bk.table(
        ["layer", "calls", "calls/s", "mean ms", "p50 ms", "p99 ms", "CPU ms/call"],
        [[r["layer"], r["calls"], r["calls_per_s"], r["mean_ms"], r["p50_ms"], r["p99_ms"], r["cpu_ms_per_call"]]
         for r in results],
        markdown=args.markdown,
    ))
    bk.write_json(args.json, {"benchmark": "prompt_layers", "machine": info, "settings": vars(args), "layers": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
