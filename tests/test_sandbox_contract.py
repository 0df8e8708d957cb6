"""The SandboxEnv contract, checked the same way against both built-in sandboxes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flue.sandbox.base import TIMEOUT_EXIT_CODE, SandboxEnv, SandboxRequest
from flue.sandbox.local import make_local_factory
from flue.sandbox.virtual import make_virtual_factory


@pytest.fixture(params=["virtual", "local"])
async def env(request, tmp_path: Path) -> SandboxEnv:
    if request.param == "virtual":
        return await make_virtual_factory({}).create_session_env(SandboxRequest(id="t"))
    return await make_local_factory({}).create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))


async def test_env_satisfies_the_protocol(env: SandboxEnv) -> None:
    assert isinstance(env, SandboxEnv)


async def test_exec_returns_stdout_stderr_and_exit_code(env: SandboxEnv) -> None:
    r = await env.exec("echo out; echo err >&2; exit 3")
    assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 3)
    assert not r.ok


async def test_exec_runs_in_cwd_with_extra_env(env: SandboxEnv) -> None:
    await env.mkdir("sub")
    r = await env.exec("pwd; echo $GREETING", cwd="sub", env={"GREETING": "hi"})
    assert r.stdout == f"{env.cwd}/sub\nhi\n"


async def test_files_persist_between_commands_but_shell_state_does_not(env: SandboxEnv) -> None:
    await env.exec("echo kept > f.txt; cd /; export GONE=1")
    r = await env.exec("cat f.txt; pwd; echo ${GONE:-unset}")
    assert r.stdout == f"kept\n{env.cwd}\nunset\n"


async def test_timeout_gives_124_and_a_clear_stderr_and_the_env_stays_usable(env: SandboxEnv) -> None:
    r = await env.exec("while true; do :; done", timeout=0.5)
    assert r.exit_code == TIMEOUT_EXIT_CODE
    assert "timed out after 0.5s" in r.stderr
    assert (await env.exec("echo still here")).stdout == "still here\n"


async def test_timeout_stops_a_sleep(env: SandboxEnv) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    r = await env.exec("sleep 20; echo never", timeout=0.3)
    assert r.exit_code == TIMEOUT_EXIT_CODE and "never" not in r.stdout
    assert loop.time() - start < 2


async def test_cancelling_exec_really_stops_the_command(env: SandboxEnv) -> None:
    task = asyncio.ensure_future(env.exec("i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.01; done", timeout=10))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    first = await env.read_file("count")
    await asyncio.sleep(0.3)
    assert await env.read_file("count") == first


async def test_commands_run_concurrently(env: SandboxEnv) -> None:
    # If execs were serialized the waiter would time out before 'touch' ran.
    waiter = asyncio.ensure_future(env.exec("while [ ! -f go ]; do sleep 0.01; done; echo released", timeout=2))
    await asyncio.sleep(0.05)
    await env.exec("touch go")
    assert (await waiter).stdout == "released\n"


async def test_text_and_bytes_round_trip(env: SandboxEnv) -> None:
    await env.write_file("deep/er/t.txt", "héllo\n")  # parents are created
    assert await env.read_file("deep/er/t.txt") == "héllo\n"
    blob = bytes(range(256))
    await env.write_file(f"{env.cwd}/b.bin", blob)
    assert await env.read_file_bytes("b.bin") == blob
    st = await env.stat("b.bin")
    assert st.is_file and not st.is_directory and st.size == 256


async def test_stat_readdir_exists(env: SandboxEnv) -> None:
    await env.write_file("d/b.txt", "b")
    await env.write_file("d/a.txt", "a")
    await env.mkdir("d/c")
    assert await env.readdir("d") == ["a.txt", "b.txt", "c"]
    st = await env.stat("d")
    assert st.is_directory and not st.is_file
    assert await env.exists("d/a.txt")
    assert not await env.exists("d/missing")


async def test_errors_are_the_python_ones(env: SandboxEnv) -> None:
    await env.mkdir("dir")
    with pytest.raises(FileNotFoundError):
        await env.read_file("missing.txt")
    with pytest.raises(FileNotFoundError):
        await env.stat("missing.txt")
    with pytest.raises(IsADirectoryError):
        await env.read_file("dir")
    with pytest.raises(FileExistsError):
        await env.mkdir("dir")
    await env.mkdir("dir", recursive=True)  # fine when recursive
    with pytest.raises(FileNotFoundError):
        await env.mkdir("x/y")  # missing parent without recursive
    await env.mkdir("x/y", recursive=True)
    assert (await env.stat("x/y")).is_directory


async def test_rm_honours_recursive_and_force(env: SandboxEnv) -> None:
    await env.write_file("tree/leaf.txt", "x")
    with pytest.raises(IsADirectoryError):
        await env.rm("tree")
    await env.rm("tree", recursive=True)
    assert not await env.exists("tree")
    with pytest.raises(FileNotFoundError):
        await env.rm("tree")
    await env.rm("tree", force=True)
    await env.write_file("f", "x")
    await env.rm("f")
    assert not await env.exists("f")


async def test_missing_exec_cwd_is_an_error(env: SandboxEnv) -> None:
    with pytest.raises(FileNotFoundError):
        await env.exec("true", cwd="nowhere")


async def test_seed_files_land_under_cwd_without_clobbering(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("host version")
    local = await make_local_factory({}).create_session_env(
        SandboxRequest(id="t", cwd=str(tmp_path), files={"keep.txt": "seed", "new/n.txt": "seeded"})
    )
    assert await local.read_file("keep.txt") == "host version"
    assert await local.read_file("new/n.txt") == "seeded"
    virtual = await make_virtual_factory({}).create_session_env(
        SandboxRequest(id="t", cwd="/work", files={"a/b.txt": "seeded"})
    )
    assert virtual.cwd == "/work"
    assert await virtual.read_file("/work/a/b.txt") == "seeded"
