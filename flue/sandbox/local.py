"""The local sandbox: the host filesystem and real subprocesses (Flue's ``local()``).

Use it where the machine itself is the isolation boundary (a CI runner, a
throwaway VM)::

    sandbox:
      kind: local
      env: {GIT_AUTHOR_NAME: flue-bot}   # extra variables, literal values
      inherit_env: [GH_TOKEN, "AWS_*"]   # host variables to pass through (fnmatch patterns)
      timeout: 120                       # default per-command timeout, seconds
      shell: /bin/bash                   # default: bash on PATH, else /bin/sh
    cwd: /path/on/host                   # default: the server's current directory

**Environment.** Commands do not inherit the host environment. They get only
:data:`ENV_ALLOWLIST` (the shell essentials: ``PATH``, ``HOME``, user, shell,
temp dir, terminal, time zone and locale, including every ``LC_*``), then the
host variables matching ``inherit_env``, then ``env``, then the ``env=`` of the
``exec`` call. A secret in the server's environment stays out of the agent's
shell unless it is named.

**The launcher.** A command can read its parent's environment
(``tr '\\0' '\\n' < /proc/$PPID/environ``). So commands are not started by
the server but by a launcher process (:mod:`flue.sandbox.launcher`, one per
server process, started at the first command) that itself holds only the
allow-listed variables: the parent a command sees has no secrets. The
launcher exits with the server and then kills the commands still running.

**What this sandbox does not isolate.** It is the host, run as the server's
user: a command can read and write every file that user can (the project,
``.env``, other users' world-readable files), reach the network without
restriction, see every process of that user, and read their environments too
(``/proc/<pid>/environ`` of the server itself, found by walking up from
``$PPID`` or by scanning ``/proc``). Keep secrets out of the server's
environment and files, or use the virtual sandbox (or a container, a VM, a
separate user) when the agent must not have them.

**Commands** run as ``<shell> -c <command>`` in a new session (their own
process group), stdin closed. On timeout the whole group gets SIGTERM, then
SIGKILL after :data:`KILL_GRACE` seconds, and ``exec`` returns exit code 124
with a stderr line saying so; the same happens when the calling task is
cancelled. A background process that outlives the command is left alone, but
its output is no longer read once the command has exited (after
:data:`DRAIN_GRACE` seconds). Output is kept in bounded buffers (the last
8 MiB per stream).

**Files** are read and written in a worker thread, never on the event loop.
``write_file`` creates missing parent directories. The cwd must exist: this
sandbox never creates or deletes anything on the host it was not asked to.
Seed files (``files:``) are written only where no file exists yet. Snapshots
are not supported (the host filesystem is already durable).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import os
import shutil
import signal
import threading
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flue.sandbox.base import TIMEOUT_EXIT_CODE, ExecResult, FileStat, SandboxRequest
from flue.sandbox.channel import Helper, HelperLost, ReplyError
from flue.sandbox.options import parse_options
from flue.sandbox.output import TailBuffer, join_stderr, timeout_message
from flue.sandbox.paths import resolve
from flue.sandbox.seeding import apply_seeds

# Inherited from the host by name; plus every LC_* variable.
ENV_ALLOWLIST: tuple[str, ...] = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR", "TEMP", "TMP",
)
DEFAULT_TIMEOUT = 120.0
KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL of a timed-out process group
DRAIN_GRACE = 0.5  # seconds to finish reading output after the command exited
LOST_MESSAGE = "flue: the local sandbox's launcher process ended while this command ran; it was stopped\n"


class LocalOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    env: dict[str, str] = Field(default_factory=dict, description="extra variables for every command")
    inherit_env: list[str] = Field(default_factory=list, description="host variable names (fnmatch patterns) to pass through")
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=24 * 3600, description="default per-command timeout, seconds")
    shell: str | None = Field(None, description="shell used as '<shell> -c <command>'")


def make_local_factory(options: dict[str, Any] | None = None, **_context: Any) -> LocalSandboxFactory:
    """The ``local`` kind's maker: validate ``options`` and return a factory."""
    return LocalSandboxFactory(parse_options(LocalOptions, options, "local"))


def build_env(options: LocalOptions, host: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment every command starts from (see the module docs)."""
    host = os.environ if host is None else host
    out = {k: v for k, v in host.items() if k in ENV_ALLOWLIST or k.startswith("LC_")}
    for pattern in options.inherit_env:
        out.update({k: v for k, v in host.items() if fnmatch.fnmatchcase(k, pattern)})
    out.update(options.env)
    return out


class LocalSandboxFactory:
    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()

    async def create_session_env(self, request: SandboxRequest) -> LocalSandboxEnv:
        cwd = resolve(os.getcwd(), request.cwd) if request.cwd else os.getcwd()
        if not await asyncio.to_thread(os.path.isdir, cwd):
            raise FileNotFoundError(
                errno.ENOENT,
                "local sandbox: the working directory does not exist on this host "
                "(set cwd: to an existing directory, or omit it to use the current directory)",
                cwd,
            )
        env = LocalSandboxEnv(cwd=cwd, options=self.options)
        await apply_seeds(env, dict(request.files or {}))
        return env


class LocalSandboxEnv:
    """A :class:`flue.sandbox.base.SandboxEnv` on the host."""

    def __init__(self, *, cwd: str | None = None, options: LocalOptions | None = None) -> None:
        self.cwd = cwd or os.getcwd()
        self.options = options or LocalOptions()
        self._base_env = build_env(self.options)
        self._shell = self.options.shell or shutil.which("bash") or "/bin/sh"

    # -- shell ---------------------------------------------------------------

    async def exec(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None  # noqa: ASYNC109 (the SandboxEnv contract)
    ) -> ExecResult:
        run_cwd = self._abs(cwd) if cwd else self.cwd
        seconds = self.options.timeout if timeout is None else float(timeout)
        if seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        out, err = TailBuffer(), TailBuffer()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            command_pid, exited = await _spawn(
                [self._shell, "-c", command], run_cwd, {**self._base_env, **(env or {})}, (out_w, err_w)
            )
        except BaseException:
            for fd in (out_r, err_r):
                os.close(fd)
            raise
        finally:
            # The launcher got its own copies; ours must close or EOF never comes.
            os.close(out_w)
            os.close(err_w)
        readers = [await _PipeReader.open(out_r, out), await _PipeReader.open(err_r, err)]
        timed_out, code = False, 1
        try:
            try:
                code = await asyncio.wait_for(asyncio.shield(exited), seconds)
            except TimeoutError:
                timed_out = True
                await _kill_group(command_pid, exited)
            except HelperLost:  # the launcher died under it: nobody can say how it ended
                await _kill_group(command_pid, exited)
                return ExecResult(out.text(), join_stderr(err.text(), LOST_MESSAGE), 137)
            await asyncio.wait([r.done for r in readers], timeout=DRAIN_GRACE)
        except asyncio.CancelledError:
            await _kill_group(command_pid, exited)
            raise
        finally:
            for r in readers:
                r.close()
        if timed_out:
            return ExecResult(out.text(), join_stderr(err.text(), timeout_message(seconds)), TIMEOUT_EXIT_CODE)
        if code < 0:  # killed by a signal: report it the way a shell does
            code = 128 - code
        return ExecResult(out.text(), err.text(), code)

    # -- files ---------------------------------------------------------------

    async def read_file(self, path: str) -> str:
        return (await self.read_file_bytes(path)).decode("utf-8", errors="replace")

    async def read_file_bytes(self, path: str) -> bytes:
        return await asyncio.to_thread(Path(self._abs(path)).read_bytes)

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file, creating missing parent directories."""
        p = Path(self._abs(path))
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)

        def write() -> None:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)

        await asyncio.to_thread(write)

    async def stat(self, path: str) -> FileStat:
        p = self._abs(path)

        def stat() -> FileStat:
            is_link = os.path.islink(p)
            st = os.stat(p) if not is_link or os.path.exists(p) else os.lstat(p)
            return FileStat(
                is_file=os.path.isfile(p),
                is_directory=os.path.isdir(p),
                is_symbolic_link=is_link,
                size=st.st_size,
                mtime=datetime.fromtimestamp(st.st_mtime),
            )

        return await asyncio.to_thread(stat)

    async def readdir(self, path: str) -> list[str]:
        return sorted(await asyncio.to_thread(os.listdir, self._abs(path)))

    async def exists(self, path: str) -> bool:
        try:
            return await asyncio.to_thread(os.path.lexists, self._abs(path))
        except (OSError, ValueError):
            return False

    async def mkdir(self, path: str, *, recursive: bool = False) -> None:
        p = Path(self._abs(path))
        await asyncio.to_thread(p.mkdir, parents=recursive, exist_ok=recursive)

    async def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None:
        p = self._abs(path)

        def rm() -> None:
            if not os.path.lexists(p):
                if force:
                    return
                raise FileNotFoundError(errno.ENOENT, "no such file or directory", p)
            if os.path.isdir(p) and not os.path.islink(p):
                if not recursive:
                    raise IsADirectoryError(errno.EISDIR, "is a directory (pass recursive=True)", p)
                shutil.rmtree(p)
            else:
                os.remove(p)

        await asyncio.to_thread(rm)

    async def walk_files(self, root: str, *, skip_dirs: frozenset[str], limit: int) -> tuple[list[str], bool]:
        """Regular files under ``root`` in one thread hop (see flue.sandbox.walk)."""
        top = self._abs(root)

        def walk() -> tuple[list[str], bool]:
            files: list[str] = []
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [
                    d for d in dirnames if d not in skip_dirs and os.path.join(dirpath, d) not in ("/proc", "/sys", "/dev")
                ]
                for name in filenames:
                    p = os.path.join(dirpath, name)
                    if os.path.isfile(p):
                        files.append(p)
                        if len(files) >= limit:
                            return sorted(files), True
            return sorted(files), False

        return await asyncio.to_thread(walk)

    def _abs(self, path: str) -> str:
        return resolve(self.cwd, path)


class _PipeReader(asyncio.Protocol):
    """Reads one pipe into a TailBuffer; we own the fd, so we can stop reading at will."""

    def __init__(self, buf: TailBuffer) -> None:
        self.buf = buf
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.BaseTransport | None = None

    @classmethod
    async def open(cls, fd: int, buf: TailBuffer) -> _PipeReader:
        reader = cls(buf)
        loop = asyncio.get_running_loop()
        reader.transport, _ = await loop.connect_read_pipe(lambda: reader, os.fdopen(fd, "rb", buffering=0))
        return reader

    def data_received(self, data: bytes) -> None:
        self.buf.add(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Launcher(Helper):
    name = "local sandbox launcher"

    def gone(self) -> None:
        global _launcher
        with _launcher_lock:
            if _launcher is self:
                _launcher = None


_launcher: _Launcher | None = None
_launcher_lock = threading.Lock()


def launcher() -> _Launcher:
    """The process-wide launcher, started on first use with only the allow-listed variables."""
    global _launcher
    with _launcher_lock:
        if _launcher is None or not _launcher.alive:
            _launcher = _Launcher("flue.sandbox.launcher", env=build_env(LocalOptions()))
        return _launcher


async def _spawn(
    argv: list[str], cwd: str, env: dict[str, str], fds: tuple[int, int]
) -> tuple[int, asyncio.Future[int]]:
    """Start a command from the launcher: its pid (= process group) and a future of its exit code."""
    loop = asyncio.get_running_loop()
    started: asyncio.Future[int] = loop.create_future()
    exited: asyncio.Future[int] = loop.create_future()

    def on_reply(header: dict[str, Any], _blobs: list[bytes]) -> None:
        if "pid" in header and not started.done():
            started.set_result(int(header["pid"]))

    def on_done(reply: asyncio.Future[Any]) -> None:
        error = None if reply.cancelled() else reply.exception()
        if error is None and not reply.cancelled():
            exited.set_result(int(reply.result()[0]["exit"]))
        elif error is not None:
            exited.set_exception(error)
        if not started.done():
            started.set_exception(error or HelperLost("the local sandbox launcher is gone"))

    exited.add_done_callback(lambda f: f.cancelled() or f.exception())
    request = {"op": "spawn", "argv": argv, "cwd": cwd, "env": env}
    for attempt in (1, 2):
        try:
            _, reply = launcher().request(request, fds=fds, on_reply=on_reply)
            break
        except HelperLost:
            if attempt == 2:
                raise
    reply.add_done_callback(on_done)
    try:
        return await started, exited
    except ReplyError as exc:
        if exc.errno:
            raise OSError(exc.errno, exc.args[0], cwd if exc.errno in (errno.ENOENT, errno.ENOTDIR) else argv[0]) from None
        raise RuntimeError(f"local sandbox: {exc}") from None


async def _kill_group(pid: int, exited: asyncio.Future[int]) -> None:
    """SIGTERM the command's process group, then SIGKILL whatever is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        try:
            await asyncio.wait_for(asyncio.shield(exited), KILL_GRACE)
        except TimeoutError:
            continue
        except Exception:
            pass  # the launcher is gone; the group may not be
        # The leader is gone; the rest of the group may not be. One more SIGKILL for them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        return
