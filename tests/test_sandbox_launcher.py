"""Issue 19: local-sandbox commands start from a launcher holding only the allow-listed
environment, so ``/proc/$PPID/environ`` shows no secret of the server's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from fixtures.processes import alive

from flue.sandbox import local
from flue.sandbox.base import SandboxRequest
from flue.sandbox.local import ENV_ALLOWLIST, make_local_factory

SECRET = "s3cr3t-value-for-flue-tests"


def server_script(tmp_path: Path, body: str) -> str:
    """A tiny 'server': a Python process with the secret in its real (initial) environment."""
    head = (
        "import asyncio, os, sys\n"
        "from flue.sandbox.base import SandboxRequest\n"
        "from flue.sandbox.local import make_local_factory\n\n"
        "async def main():\n"
        f"    env = await make_local_factory({{}}).create_session_env(SandboxRequest(id='t', cwd={str(tmp_path)!r}))\n"
    )
    return head + textwrap.indent(textwrap.dedent(body), "    ") + "\nasyncio.run(main())\n"


def run_server(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", server_script(tmp_path, body)],
        env={**os.environ, "FLUE_FAKE_SECRET": SECRET}, capture_output=True, text=True, timeout=60,
    )


def test_the_parent_a_command_can_read_holds_no_server_secret(tmp_path: Path) -> None:
    done = run_server(tmp_path, """
        r = await env.exec("tr '\\\\0' '\\\\n' < /proc/$PPID/environ; echo; echo self=$$; grep PPid /proc/$PPID/status")
        print(r.stdout)
        print("server", os.getpid())
    """)
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout and "FLUE_FAKE_SECRET" not in done.stdout
    assert "PATH=" in done.stdout  # it did read an environment: the launcher's
    names = {line.split("=", 1)[0] for line in done.stdout.splitlines() if "=" in line and not line.startswith("self=")}
    assert names <= set(ENV_ALLOWLIST) | {n for n in names if n.startswith("LC_")}, names
    server = done.stdout.split("server ")[1].split()[0]
    assert f"PPid:\t{server}" in done.stdout  # the launcher's parent is the server (documented)


def test_commands_die_with_the_server(tmp_path: Path) -> None:
    done = run_server(tmp_path, """
        task = asyncio.ensure_future(env.exec("echo $$ > cmd.pid; sleep 30", timeout=60))
        for _ in range(200):
            if os.path.exists("cmd.pid") and open("cmd.pid").read().strip():
                break
            await asyncio.sleep(0.02)
        os._exit(0)  # the server dies while the command runs
    """.replace('"cmd.pid"', repr(str(tmp_path / "cmd.pid"))))
    assert done.returncode == 0, done.stderr
    pid = int((tmp_path / "cmd.pid").read_text())
    deadline = time.monotonic() + 3
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(pid)


async def test_a_dead_launcher_is_started_again(tmp_path: Path) -> None:
    env = await make_local_factory({}).create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))
    assert (await env.exec("echo one")).stdout == "one\n"
    first = local.launcher()
    first.kill()
    for _ in range(100):
        if not first.alive:
            break
        await asyncio.sleep(0.02)
    assert (await env.exec("echo two")).stdout == "two\n"
    assert local.launcher().pid != first.pid
