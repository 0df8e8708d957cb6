"""The sandbox contract test suite: run it against your ``SandboxEnv``.

Subclass :class:`SandboxContract` in a test module and provide an ``env``
fixture returning a fresh env (an empty working directory is best)::

    import pytest
    from flue.sandbox.base import SandboxRequest
    from flue.testing.sandbox_contract import SandboxContract

    class TestMySandbox(SandboxContract):
        @pytest.fixture
        async def env(self):
            factory = make_my_factory({"api_url": "..."})
            return await factory.create_session_env(SandboxRequest(id="test"))

pytest collects every ``test_*`` method for your class (the suite needs
``pytest-asyncio`` and marks its tests itself). It checks what the harness
relies on: stdout/stderr/exit codes, ``cwd`` and ``env``, files persisting
between commands while shell state does not, exit code 124 and a clear stderr
on timeout, that cancelling ``exec`` really stops the command, concurrent
commands, text and bytes round trips, ``stat``/``readdir``/``exists``, and
the Python exceptions of the error conventions (:mod:`flue.sandbox`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flue.sandbox.base import TIMEOUT_EXIT_CODE, SandboxEnv


@pytest.mark.asyncio
class SandboxContract:
    """Behavioural contract for a sandbox env. Subclass it (see the module docstring)."""

    @pytest.fixture
    def env(self) -> Any:
        raise NotImplementedError("provide an `env` fixture returning a fresh SandboxEnv")

    async def test_env_satisfies_the_protocol(self, env: SandboxEnv) -> None:
        assert isinstance(env, SandboxEnv)


    async def test_exec_returns_stdout_stderr_and_exit_code(self, env: SandboxEnv) -> None:
        r = await env.exec("echo out; echo err >&2; exit 3")
        assert (r.stdout, r.stderr, r.exit_code) == ("out\n", "err\n", 3)
        assert not r.ok


    async def test_exec_runs_in_cwd_with_extra_env(self, env: SandboxEnv) -> None:
        await env.mkdir("sub")
        r = await env.exec("pwd; echo $GREETING", cwd="sub", env={"GREETING": "hi"})
        assert r.stdout == f"{env.cwd}/sub\nhi\n"


    async def test_files_persist_between_commands_but_shell_state_does_not(self, env: SandboxEnv) -> None:
        await env.exec("echo kept > f.txt; cd /; export GONE=1")
        r = await env.exec("cat f.txt; pwd; echo ${GONE:-unset}")
        assert r.stdout == f"kept\n{env.cwd}\nunset\n"


    async def test_timeout_gives_124_and_a_clear_stderr_and_the_env_stays_usable(self, env: SandboxEnv) -> None:
        r = await env.exec("while true; do :; done", timeout=0.5)
        assert r.exit_code == TIMEOUT_EXIT_CODE
        assert "timed out after 0.5s" in r.stderr
        assert (await env.exec("echo still here")).stdout == "still here\n"


    async def test_timeout_stops_a_sleep(self, env: SandboxEnv) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        r = await env.exec("sleep 20; echo never", timeout=0.3)
        assert r.exit_code == TIMEOUT_EXIT_CODE and "never" not in r.stdout
        assert loop.time() - start < 2


    async def test_cancelling_exec_really_stops_the_command(self, env: SandboxEnv) -> None:
        task = asyncio.ensure_future(env.exec("i=0; while true; do i=$((i+1)); echo $i > count; sleep 0.01; done", timeout=10))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        first = await env.read_file("count")
        await asyncio.sleep(0.3)
        assert await env.read_file("count") == first


    async def test_commands_run_concurrently(self, env: SandboxEnv) -> None:
        # If execs were serialized the waiter would time out before 'touch' ran.
        waiter = asyncio.ensure_future(env.exec("while [ ! -f go ]; do sleep 0.01; done; echo released", timeout=2))
        await asyncio.sleep(0.05)
        await env.exec("touch go")
        assert (await waiter).stdout == "released\n"


    async def test_text_and_bytes_round_trip(self, env: SandboxEnv) -> None:
        await env.write_file("deep/er/t.txt", "héllo\n")  # parents are created
        assert await env.read_file("deep/er/t.txt") == "héllo\n"
        blob = bytes(range(256))
        await env.write_file(f"{env.cwd}/b.bin", blob)
        assert await env.read_file_bytes("b.bin") == blob
        st = await env.stat("b.bin")
        assert st.is_file and not st.is_directory and st.size == 256


    async def test_stat_readdir_exists(self, env: SandboxEnv) -> None:
        await env.write_file("d/b.txt", "b")
        await env.write_file("d/a.txt", "a")
        await env.mkdir("d/c")
        assert await env.readdir("d") == ["a.txt", "b.txt", "c"]
        st = await env.stat("d")
        assert st.is_directory and not st.is_file
        assert await env.exists("d/a.txt")
        assert not await env.exists("d/missing")


    async def test_errors_are_the_python_ones(self, env: SandboxEnv) -> None:
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


    async def test_rm_honours_recursive_and_force(self, env: SandboxEnv) -> None:
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


    async def test_missing_exec_cwd_is_an_error(self, env: SandboxEnv) -> None:
        with pytest.raises(FileNotFoundError):
            await env.exec("true", cwd="nowhere")
