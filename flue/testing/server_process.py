"""Run a real ``flue start`` (or ``flue dev``) server in a subprocess, for end-to-end tests.

::

    async with FlueServerProcess(project_root) as server:     # flue start on a free port
        async with aiohttp.ClientSession() as http:
            await http.post(f"{server.url}/agents/assistant/u1", json={"message": "hi"})
        server.kill()                  # SIGKILL: a crash, nothing cleaned up
        await server.start()           # the same project, the same port, again

The server listens on ``127.0.0.1`` only. ``start()`` returns once the server
answers ``GET /openapi.json`` (or raises with the server's output when it exits
or does not come up in time). Its stderr goes to a log file (``log_path``), so
a test can show what the server said when an assertion fails. Leaving the
context terminates the process (SIGTERM, then SIGKILL after ``stop_timeout``).
Only the process this object started is ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FlueServerProcess:
    def __init__(
        self,
        root: str | Path,
        *,
        command: str = "start",
        args: list[str] | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
        ready_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ):
        self.root = Path(root)
        self.command = command
        self.args = list(args or [])
        self.env = dict(env or {})
        self.port = port or free_port()
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.proc: asyncio.subprocess.Process | None = None
        self.log_path = Path(tempfile.mkstemp(prefix="flue-server-", suffix=".log")[1])
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def output(self) -> str:
        """What the server wrote to stderr and stdout so far (all its starts)."""
        return self.log_path.read_text(errors="replace")

    async def start(self) -> FlueServerProcess:
        if self.proc is not None and self.proc.returncode is None:
            raise RuntimeError("the server is already running")
        env = {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "flue", self.command, "--root", str(self.root),
                "--host", "127.0.0.1", "--port", str(self.port), *self.args,
                env=env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )
        self.returncode = None
        await self._wait_ready()
        return self

    async def _wait_ready(self) -> None:
        import aiohttp

        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while loop.time() < deadline:
                if self.proc.returncode is not None:
                    raise RuntimeError(f"flue {self.command} exited with {self.proc.returncode}:\n{self.output()}")
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    async with http.get(f"{self.url}/openapi.json") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.1)
        await self.stop()
        raise TimeoutError(f"flue {self.command} did not answer within {self.ready_timeout}s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (call ``await wait()`` to reap it)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        assert self.proc is not None
        self.returncode = await asyncio.wait_for(self.proc.wait(), self.stop_timeout)
        return self.returncode

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Signal the server (SIGTERM by default: a graceful stop) and wait for it; SIGKILL if it lingers."""
        proc = self.proc
        if proc is None:
            return None
        if proc.returncode is None:
            proc.send_signal(sig)
            try:
                await asyncio.wait_for(proc.wait(), self.stop_timeout)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        self.returncode = proc.returncode
        return self.returncode

    async def __aenter__(self) -> FlueServerProcess:
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
