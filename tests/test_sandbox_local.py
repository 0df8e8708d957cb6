"""The local sandbox: real subprocesses, an allow-listed environment, process-group timeouts."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from fixtures.processes import wait_dead

from flue.sandbox.base import SandboxRequest
from flue.sandbox.local import LocalOptions, LocalSandboxEnv, build_env, make_local_factory
from flue.sandbox.options import SandboxOptionsError


async def new_env(tmp_path: Path, options: dict | None = None) -> LocalSandboxEnv:
    return await make_local_factory(options or {}).create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))


async def test_runs_a_real_subprocess_on_the_host(tmp_path: Path) -> None:
    env = await new_env(tmp_path)
    r = await env.exec("echo $$; pwd; echo made > host.txt")
    pid, cwd = r.stdout.split()
    assert int(pid) != os.getpid()
    assert cwd == str(tmp_path)
    assert (tmp_path / "host.txt").read_text() == "made\n"  # the host filesystem itself


async def test_environment_is_allow_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLUE_TEST_SECRET", "do-not-leak")
    monkeypatch.setenv("FLUE_TEST_TOKEN_A", "passed-through")
    monkeypatch.setenv("LC_FLUE_TEST", "locale-ish")
    env = await new_env(tmp_path, {"inherit_env": ["FLUE_TEST_TOKEN_*"], "env": {"CONFIGURED": "yes"}})
    r = await env.exec("env")
    seen = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert "FLUE_TEST_SECRET" not in seen
    assert "do-not-leak" not in r.stdout
    assert seen["FLUE_TEST_TOKEN_A"] == "passed-through"
    assert seen["LC_FLUE_TEST"] == "locale-ish"
    assert seen["CONFIGURED"] == "yes"
    assert seen["PATH"] == os.environ["PATH"]
    r = await env.exec("echo $PER_CALL", env={"PER_CALL": "1"})
    assert r.stdout == "1\n"


def test_build_env_order() -> None:
    host = {"PATH": "/bin", "HOME": "/h", "SECRET": "s", "GH_TOKEN": "g", "LC_ALL": "C"}
    env = build_env(LocalOptions(inherit_env=["GH_TOKEN"], env={"HOME": "/override"}), host)
    assert env == {"PATH": "/bin", "HOME": "/override", "GH_TOKEN": "g", "LC_ALL": "C"}


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    env = await new_env(tmp_path)
    r = await env.exec("sleep 30 & echo $! > bg.pid; sleep 30", timeout=0.5)
    assert r.exit_code == 124
    assert "timed out after 0.5s" in r.stderr
    assert await wait_dead(int((tmp_path / "bg.pid").read_text()))


async def test_timeout_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import flue.sandbox.local as local

    monkeypatch.setattr(local, "KILL_GRACE", 0.3)
    env = await new_env(tmp_path)
    r = await env.exec("trap '' TERM; echo $$ > sh.pid; sleep 30", timeout=0.3)
    assert r.exit_code == 124
    assert await wait_dead(int((tmp_path / "sh.pid").read_text()))


async def test_cancellation_kills_the_process_group(tmp_path: Path) -> None:
    env = await new_env(tmp_path)
    task = asyncio.ensure_future(env.exec("sleep 30 & echo $! > bg.pid; wait", timeout=20))
    for _ in range(100):
        if (tmp_path / "bg.pid").exists() and (tmp_path / "bg.pid").read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_dead(int((tmp_path / "bg.pid").read_text()))


async def test_a_background_process_holding_the_output_does_not_block(tmp_path: Path) -> None:
    env = await new_env(tmp_path)
    loop = asyncio.get_running_loop()
    start = loop.time()
    r = await env.exec("sleep 5 & echo $! > bg.pid; echo done")
    assert r.stdout == "done\n" and r.exit_code == 0
    assert loop.time() - start < 2
    os.kill(int((tmp_path / "bg.pid").read_text()), 9)  # the sleep we started


async def test_missing_cwd_is_a_clear_error_and_nothing_is_created(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError, match="working directory does not exist"):
        await make_local_factory({}).create_session_env(SandboxRequest(id="t", cwd=str(missing)))
    assert not missing.exists()


async def test_default_cwd_is_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = await make_local_factory({}).create_session_env(SandboxRequest(id="t"))
    assert env.cwd == str(tmp_path)


def test_bad_options_are_reported() -> None:
    with pytest.raises(SandboxOptionsError, match="sandbox 'local'.*\n- workspace: unknown option"):
        make_local_factory({"workspace": "x"})
    with pytest.raises(SandboxOptionsError, match="inherit_env"):
        make_local_factory({"inherit_env": "GH_TOKEN"})
