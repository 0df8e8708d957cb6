"""The virtual sandbox's worker processes: what a command changes comes back, what the env
changes goes in, and workers come and go without the env noticing."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from flue.sandbox import pool as pool_module
from flue.sandbox.base import SandboxRequest
from flue.sandbox.virtual import VirtualSandboxEnv, make_virtual_factory


@pytest.fixture
def fresh_pool(monkeypatch):
    """A pool of this test's own, so worker counts and pids are the test's."""
    mine = pool_module.WorkerPool(2)
    monkeypatch.setattr(pool_module, "_pool", mine)
    yield mine
    mine.shutdown()


def read_environ(pid: int) -> bytes:
    return Path(f"/proc/{pid}/environ").read_bytes()


async def new_env(**request) -> VirtualSandboxEnv:
    return await make_virtual_factory({}).create_session_env(SandboxRequest(id="t", **request))


async def test_what_a_command_changes_is_in_the_env_when_exec_returns() -> None:
    env = await new_env(files={"old.txt": "old", "gone/a.txt": "a", "mode.sh": "echo hi"})
    r = await env.exec(
        "echo new > new.txt; echo more >> old.txt; mkdir -p d/e/f; printf '\\000\\377' > bin;"
        " ln -s moved.txt link; chmod 755 mode.sh; rm -r gone; mv new.txt moved.txt; echo done"
    )
    assert r.stdout == "done\n", r
    assert await env.read_file("old.txt") == "oldmore\n"
    assert await env.read_file("moved.txt") == "new\n" and not await env.exists("new.txt")
    assert (await env.stat("d/e/f")).is_directory
    assert await env.read_file_bytes("bin") == b"\x00\xff"
    assert (await env.stat("link")).is_symbolic_link
    assert not await env.exists("gone")
    assert env._fs.stat("/workspace/mode.sh")["mode"] == 0o755
    restored = await new_env(snapshot=await env.snapshot())  # and the snapshot has it all
    assert await restored.read_file("moved.txt") == "new\n"


async def test_what_the_env_changes_between_commands_reaches_the_next_one() -> None:
    env = await new_env()
    await env.exec("echo first > one.txt")  # the replica exists from here on
    await env.write_file("two.txt", "from a tool")
    await env.mkdir("dir")
    await env.rm("one.txt")
    r = await env.exec("cat two.txt; echo; ls; test -e one.txt || echo no-one")
    assert r.stdout == "from a tool\ndir\ntwo.txt\nno-one\n", r


async def test_a_running_command_and_the_env_see_each_others_files() -> None:
    env = await new_env()
    command = "echo started > progress; while [ ! -f go ]; do sleep 0.01; done; cat go > seen; echo ok"
    running = asyncio.ensure_future(env.exec(command, timeout=10))
    for _ in range(200):  # reads catch up with the running command
        if await env.exists("progress"):
            break
        await asyncio.sleep(0.02)
    assert await env.read_file("progress") == "started\n"
    await env.write_file("go", "from a tool")  # made in the replica, where the command runs
    r = await running
    assert r.stdout == "ok\n", r
    assert await env.read_file("seen") == "from a tool"


async def test_a_dead_worker_is_replaced_and_the_env_keeps_its_files(fresh_pool) -> None:
    env = await new_env()
    await env.exec("echo kept > kept.txt")
    pid = env._box.link.worker.pid
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        if not env._box.link.worker.alive:
            break
        await asyncio.sleep(0.02)
    r = await env.exec("cat kept.txt")
    assert r.stdout == "kept\n" and env._box.link.worker.pid != pid


async def test_a_replica_the_worker_dropped_is_opened_again() -> None:
    env = await new_env()
    await env.exec("echo v1 > f")
    link = env._box.link
    link.worker.notify({"op": "drop", "rids": [link.rid]})  # the env still thinks it is there
    assert (await env.exec("cat f")).stdout == "v1\n"


async def test_no_process_for_envs_without_commands_and_none_left_when_idle(fresh_pool) -> None:
    envs = [await new_env(files={"a.txt": "x"}) for _ in range(20)]
    for env in envs:
        await env.write_file("b.txt", "y")
        assert await env.read_file("a.txt") == "x"
    assert fresh_pool.workers == []
    await envs[0].exec("true")
    assert len(fresh_pool.workers) == 1
    worker = fresh_pool.workers[0]
    del envs
    fresh_pool.reap(now=1e12)  # long after: replicas dropped, the idle worker stopped
    assert not worker.alive
    for _ in range(100):
        if worker.proc.poll() is not None:
            break
        await asyncio.sleep(0.02)
    assert worker.proc.returncode is not None


async def test_workers_start_without_the_servers_environment(fresh_pool, monkeypatch) -> None:
    monkeypatch.setenv("FLUE_TEST_SECRET", "do-not-leak")
    env = await new_env()
    await env.exec("true")
    environ = read_environ(env._box.link.worker.pid)
    assert b"do-not-leak" not in environ and b"FLUE_TEST_SECRET" not in environ
