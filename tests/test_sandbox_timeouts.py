"""Issue 19: a virtual-sandbox command's time limit holds whatever bashkit does inside.

Some bashkit builtins loop without checking their timeout (``awk
'BEGIN{while(1){}}'``): with bashkit's loop budget lifted, only killing the
worker process running the command stops them. These tests lift the budget to
reach that backstop, then check the budget itself.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp
import pytest
from fixtures.durability import scripted_project
from fixtures.processes import alive, busy_over, children

from flue.sandbox.base import TIMEOUT_EXIT_CODE, SandboxRequest
from flue.sandbox.virtual import VirtualSandboxEnv, make_virtual_factory
from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

AWK_LOOPS = [
    "awk 'BEGIN{while(1){}}'",
    "awk 'BEGIN{for(;;);}'",
    "awk 'BEGIN{while(1);}'",
    "awk 'BEGIN{do{}while(1)}'",
    "seq 3 | awk '{while(1){}}'",
]


async def new_env(**options) -> VirtualSandboxEnv:
    return await make_virtual_factory(options).create_session_env(SandboxRequest(id="t"))


async def test_every_awk_loop_ends_with_124_and_the_cpu_goes_idle() -> None:
    envs = [await new_env(max_loop_iterations=None) for _ in AWK_LOOPS]
    for env in envs:
        await env.write_file("before.txt", "kept")
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def run(env: VirtualSandboxEnv, command: str):
        r = await env.exec(f"echo lost > during.txt; {command}", timeout=2)
        return r, loop.time() - start

    results = await asyncio.gather(*(run(env, cmd) for env, cmd in zip(envs, AWK_LOOPS, strict=True)))
    for cmd, (r, took) in zip(AWK_LOOPS, results, strict=True):
        assert r.exit_code == TIMEOUT_EXIT_CODE, (cmd, r)
        assert "timed out after 2s" in r.stderr and "killed" in r.stderr, (cmd, r.stderr)
        assert took < 5, (cmd, took)
    # nothing spins any more: not this process, not a worker
    assert await busy_over(os.getpid()) < 0.3
    for env in envs:  # the env is usable; what it had is kept, what the killed command did is not
        assert await env.read_file("before.txt") == "kept"
        assert not await env.exists("during.txt")
        r = await env.exec("cat before.txt; echo again >> before.txt")
        assert (r.stdout, r.exit_code) == ("kept", 0)
        assert await env.read_file("before.txt") == "keptagain\n"


async def test_a_command_sharing_the_killed_worker_ends_with_a_clear_error(monkeypatch) -> None:
    from flue.sandbox import pool as pool_module

    two = pool_module.WorkerPool(2)  # placement is then known: A on one worker, B on the other, C with A
    monkeypatch.setattr(pool_module, "_pool", two)
    try:
        a, b, c = await new_env(), await new_env(), await new_env(max_loop_iterations=None)
        sleeps = []
        for env in (a, b):
            sleeps.append(asyncio.ensure_future(env.exec("sleep 3; echo slept", timeout=10)))
            for _ in range(500):
                if env._box.link is not None:
                    break
                await asyncio.sleep(0.01)
        r = await c.exec("awk 'BEGIN{while(1){}}'", timeout=0.5)
        assert r.exit_code == TIMEOUT_EXIT_CODE
        shared, apart = await sleeps[0], await sleeps[1]
        assert shared.exit_code == 137 and "ended before it finished" in shared.stderr, shared
        assert (apart.stdout, apart.exit_code) == ("slept\n", 0)
        assert (await a.exec("echo fine")).stdout == "fine\n"  # on a new worker
    finally:
        two.shutdown()


async def test_the_loop_budget_stops_a_runaway_awk_long_before_the_timeout() -> None:
    env = await new_env()
    started = time.monotonic()
    r = await env.exec("awk 'BEGIN{while(1){}}'", timeout=60)
    assert r.exit_code == 2 and "loop iteration limit (10000000) exceeded" in r.stderr
    assert time.monotonic() - started < 10
    r = await env.exec("awk 'BEGIN{for(i=0;i<100000;i++) s+=i; print s}'")
    assert r.stdout == "4999950000\n"  # ordinary loops are untouched


async def test_cancelling_a_wedged_command_kills_its_worker() -> None:
    env = await new_env(max_loop_iterations=None)
    task = asyncio.ensure_future(env.exec("awk 'BEGIN{while(1){}}'", timeout=60))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await busy_over(os.getpid()) < 0.3
    assert (await env.exec("echo back")).stdout == "back\n"


AGENT = """---
description: runs shell commands
http: true
tools: [bash]
sandbox: {kind: virtual, max_loop_iterations: null}
---
Run what you are asked to.
"""


def awk_call(timeout: float, id: str):
    return calls(tool_call("bash", {"command": "awk 'BEGIN{while(1){}}'", "timeout": timeout}, id=id))


@pytest.mark.slow
async def test_over_http_a_wedging_command_neither_blocks_the_instance_nor_outlives_a_crash(tmp_path: Path) -> None:
    async with ScriptedModelServer() as model:
        model.add(awk_call(2, "b1"), reply("It was stopped."), awk_call(3, "b2"), reply("Stopped again."),
                  reply("Third prompt answered."))
        project = scripted_project(
            tmp_path / "proj", model.url, persistence="{kind: sqlite, path: state.db}", files={"agents/shell.md": AGENT}
        )
        async with FlueServerProcess(project) as server, aiohttp.ClientSession() as http:
            url = f"{server.url}/agents/shell/u1"
            started = time.monotonic()
            async with http.post(url, params={"wait": "result"}, json={"message": "spin"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["text"] == "It was stopped."
            assert time.monotonic() - started < 15
            assert server.pid is not None
            assert await busy_over(server.pid) < 0.3, server.output()  # no core pinned after it

            # again, and the server dies while the loop spins in its worker
            async with http.post(url, json={"message": "spin again"}) as resp:
                assert resp.status == 202, await resp.text()
            workers: list[int] = []
            for _ in range(200):
                workers = children(server.pid)
                if workers and await busy_over(workers[0], 0.2) > 0.1:
                    break
                await asyncio.sleep(0.05)
            assert workers, server.output()
            server.kill()
            await server.wait()
            for _ in range(100):
                if not any(alive(w) for w in workers):
                    break
                await asyncio.sleep(0.05)
            assert not any(alive(w) for w in workers)  # the kernel killed its workers with it
            await server.start()  # the submission is taken up again; its command runs again, and stops
            async with http.post(url, params={"wait": "result"}, json={"message": "and again"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["text"] == "Third prompt answered."
    tool_results = [m for r in model.requests for m in r["messages"] if m["role"] == "tool"]
    assert {m["tool_call_id"] for m in tool_results} == {"b1", "b2"}
    assert all("[exit code: 124]" in m["content"] for m in tool_results)
