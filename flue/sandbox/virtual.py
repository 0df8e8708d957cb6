"""The virtual sandbox (the default): bashkit's bash over an in-memory filesystem.

Select it with ``sandbox: virtual`` (or omit ``sandbox:``), or with options::

    sandbox:
      kind: virtual
      workspace: sandbox/support      # host folder, relative to the source root, copied into the cwd
      network: {allow: ["https://api.example.com/"]}   # off unless listed
      timeout: 120                    # default per-command timeout, seconds
      env: {LANG: C.UTF-8}            # variables every command sees
      python: false                   # bashkit's embedded python3 (Monty, not CPython)
      sqlite: false                   # bashkit's embedded sqlite3
    cwd: /workspace                   # the default
    files: {notes/todo.md: "..."}     # seed files, relative to the cwd

**Seeding the workspace.** The files of the ``workspace:`` folder (dotfiles
included, so ``AGENTS.md`` and ``.agents/skills/`` work) and then the
frontmatter ``files:`` are written under the cwd at ``init()``. A project keeps
such folders under ``sandbox/<agent>/`` by convention: the example support agent
has ``sandbox/support/articles/*.md`` and ``workspace: sandbox/support``, so its
articles are in ``/workspace/articles``. A relative ``workspace`` resolves
against the project's source root (passed by Flue as ``source_root=``; without
it, the source root of the current directory). The folder is read at every
``init()``, so edits show up in the next harness.

**One filesystem per init().** The factory creates a fresh filesystem for each
``create_session_env`` call; the env is shared by every session and task of
that harness. ``snapshot()`` returns the whole filesystem as bytes (bashkit's
compressed, deduplicated format); ``SandboxRequest.snapshot`` restores it, and
seeds are then written only where a file is missing.

**Each command runs in a fresh shell** over that shared filesystem, like Flue's
just-bash: files persist between commands; variables, functions and ``cd`` do
not. This is also how the bashkit limits are handled:

- bashkit counts commands over an interpreter's *lifetime* (100,000 by
  default) and only ``reset()`` (which wipes files) clears the count. A shell
  per command never accumulates that count, so a long-lived session never dies
  of it. The filesystem lives in a holder interpreter that never runs a
  command; each command's shell mounts it at ``/``.
- The shell uses bashkit's ``Interactive`` profile (no command-count cap) and
  always a wall-clock timeout, so a runaway loop ends by the timeout: exit
  code 124 and a stderr line saying so. A per-command shell also makes every
  command's timeout its own, and lets commands run concurrently.
- Cancelling the asyncio task of an ``exec`` does *not* stop a bashkit
  interpreter on its own. ``exec`` calls ``cancel()`` on the command's shell,
  which stops it at the next command boundary, and waits briefly for it to
  finish (a running ``sleep`` ends at its timeout but no later command runs).
  The shell is then thrown away, so there is no sticky cancel flag to
  ``clear_cancel()``.
- Output is streamed into bounded buffers (the last 8 MiB of each stream).

Network access is off unless ``network.allow`` lists URL prefixes.
"""

from __future__ import annotations

import asyncio
import errno
import posixpath
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import bashkit
from pydantic import BaseModel, ConfigDict, Field

from flue.sandbox.base import TIMEOUT_EXIT_CODE, ExecResult, FileStat, SandboxRequest
from flue.sandbox.options import parse_options
from flue.sandbox.output import TailBuffer, join_stderr, timeout_message
from flue.sandbox.paths import resolve
from flue.sandbox.seeding import apply_seeds, read_folder

DEFAULT_CWD = "/workspace"
DEFAULT_TIMEOUT = 120.0
# How long a cancelled exec waits for its interpreter to reach a command boundary.
CANCEL_GRACE = 2.0

T = TypeVar("T")


class NetworkOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    allow: list[str] = Field(min_length=1, description="URL prefixes commands may reach (curl, wget, http)")
    block_private_ips: bool = True


class VirtualOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace: str | None = Field(None, description="host folder copied into the cwd, relative to the source root")
    network: NetworkOptions | None = None
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0, le=24 * 3600, description="default per-command timeout, seconds")
    env: dict[str, str] = Field(default_factory=dict)
    python: bool = False
    sqlite: bool = False


def make_virtual_factory(options: dict[str, Any] | None = None, *, source_root: str | Path | None = None) -> VirtualSandboxFactory:
    """The ``virtual`` kind's maker: validate ``options`` and return a factory."""
    opts = parse_options(VirtualOptions, options, "virtual")
    workspace = None
    if opts.workspace is not None:
        workspace = Path(opts.workspace).expanduser()
        if not workspace.is_absolute():
            workspace = _default_source_root(source_root) / workspace
        if not workspace.is_dir():
            raise FileNotFoundError(
                f"sandbox 'virtual': workspace folder '{opts.workspace}' not found (looked for {workspace})"
            )
    return VirtualSandboxFactory(opts, workspace=workspace)


def _default_source_root(source_root: str | Path | None) -> Path:
    if source_root is not None:
        return Path(source_root)
    from flue.project import resolve_source_root  # lazy: flue.project imports the plugin machinery

    return resolve_source_root(Path.cwd())


class VirtualSandboxFactory:
    def __init__(self, options: VirtualOptions | None = None, *, workspace: Path | None = None) -> None:
        self.options = options or VirtualOptions()
        self.workspace = workspace

    async def create_session_env(self, request: SandboxRequest) -> VirtualSandboxEnv:
        cwd = resolve("/", request.cwd or DEFAULT_CWD)
        if request.snapshot is not None:
            holder = await asyncio.to_thread(_restore, request.snapshot)
        else:
            holder = bashkit.Bash()
        env = VirtualSandboxEnv(holder, cwd=cwd, options=self.options)
        await env.mkdir(cwd, recursive=True)
        seeds: dict[str, str | bytes] = {}
        if self.workspace is not None:
            seeds.update(await asyncio.to_thread(read_folder, self.workspace))
        seeds.update(request.files or {})
        await apply_seeds(env, seeds)
        return env


def _restore(data: bytes) -> Any:
    try:
        return bashkit.Bash.from_snapshot(bytes(data))
    except Exception as exc:
        raise ValueError(f"virtual sandbox snapshot could not be restored: {exc}") from exc


class VirtualSandboxEnv:
    """A :class:`flue.sandbox.base.SandboxEnv` over one bashkit filesystem."""

    def __init__(self, holder: Any, *, cwd: str = DEFAULT_CWD, options: VirtualOptions | None = None) -> None:
        self._holder = holder  # owns the filesystem; never runs a command (see module docs)
        self._fs = holder.fs()
        self.cwd = cwd
        self.options = options or VirtualOptions()

    # -- shell ---------------------------------------------------------------

    async def exec(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None  # noqa: ASYNC109 (the SandboxEnv contract)
    ) -> ExecResult:
        run_cwd = self._abs(cwd) if cwd else self.cwd
        st = await self.stat(run_cwd)  # FileNotFoundError for a missing cwd, like a subprocess would
        if not st.is_directory:
            raise NotADirectoryError(errno.ENOTDIR, "working directory is not a directory", run_cwd)
        seconds = self.options.timeout if timeout is None else float(timeout)
        if seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        shell = bashkit.Bash(
            cwd=run_cwd,
            env={**self.options.env, **(env or {})},
            timeout_seconds=seconds,
            profile=bashkit.ExecutionProfile.Interactive,
            network=self.options.network.model_dump() if self.options.network else None,
            python=self.options.python,
            sqlite=self.options.sqlite,
        )
        shell.mount("/", self._fs)
        out, err = TailBuffer(), TailBuffer()
        fut = asyncio.ensure_future(shell.execute(command, stdout=out.awrite, stderr=err.awrite))
        fut.add_done_callback(_consume)
        try:
            result = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # Cancelling the future does not stop bashkit: stop the interpreter itself.
            shell.cancel()
            await asyncio.wait({fut}, timeout=CANCEL_GRACE)
            raise
        stderr = err.text()
        error = result.error or ""
        if "execution timeout" in error:
            return ExecResult(out.text(), join_stderr(stderr, timeout_message(seconds)), TIMEOUT_EXIT_CODE)
        # With sinks, result.stderr holds only bashkit's own message (a limit, a parse error).
        return ExecResult(out.text(), join_stderr(stderr, _line(result.stderr)), result.exit_code)

    # -- files ---------------------------------------------------------------

    async def read_file(self, path: str) -> str:
        return (await self.read_file_bytes(path)).decode("utf-8", errors="replace")

    async def read_file_bytes(self, path: str) -> bytes:
        p = self._abs(path)
        return bytes(self._call(p, lambda: self._fs.read_file(p)))

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file, creating missing parent directories."""
        p = self._abs(path)
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        parent = posixpath.dirname(p)
        if not self._fs.exists(parent):
            self._call(parent, lambda: self._fs.mkdir(parent, recursive=True))
        self._call(p, lambda: self._fs.write_file(p, data))

    async def stat(self, path: str) -> FileStat:
        p = self._abs(path)
        info = self._call(p, lambda: self._fs.stat(p))
        return FileStat(
            is_file=info.get("file_type") == "file",
            is_directory=info.get("file_type") == "directory",
            is_symbolic_link=self._is_link(p),
            size=int(info.get("size") or 0),
            mtime=datetime.fromtimestamp(info["modified"]) if info.get("modified") else datetime.now(),
        )

    async def readdir(self, path: str) -> list[str]:
        p = self._abs(path)
        st = await self.stat(p)
        if not st.is_directory:
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", p)
        return sorted(e["name"] for e in self._call(p, lambda: self._fs.read_dir(p)))

    async def exists(self, path: str) -> bool:
        try:
            return bool(self._fs.exists(self._abs(path)))
        except Exception:
            return False

    async def mkdir(self, path: str, *, recursive: bool = False) -> None:
        p = self._abs(path)
        if self._fs.exists(p):
            st = await self.stat(p)
            if recursive and st.is_directory:
                return
            raise FileExistsError(errno.EEXIST, "file exists", p)
        self._call(p, lambda: self._fs.mkdir(p, recursive=recursive))

    async def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None:
        p = self._abs(path)
        if not self._fs.exists(p):
            if force:
                return
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", p)
        st = await self.stat(p)
        if st.is_directory and not st.is_symbolic_link and not recursive:
            raise IsADirectoryError(errno.EISDIR, "is a directory (pass recursive=True)", p)
        self._call(p, lambda: self._fs.remove(p, recursive=recursive))

    # -- persistence and fast paths -------------------------------------------

    async def snapshot(self) -> bytes:
        """The whole filesystem as bytes, for ``SandboxRequest.snapshot``."""
        return bytes(await asyncio.to_thread(self._holder.snapshot))

    async def walk_files(self, root: str, *, skip_dirs: frozenset[str], limit: int) -> tuple[list[str], bool]:
        """Regular files under ``root``, one ``read_dir`` per directory (see flue.sandbox.walk)."""
        files: list[str] = []
        stack = [self._abs(root)]
        while stack:
            d = stack.pop()
            try:
                entries = self._fs.read_dir(d)
            except Exception:
                continue
            for e in entries:
                kind = (e.get("metadata") or {}).get("file_type")
                p = posixpath.join(d, e["name"])
                if kind == "directory":
                    if e["name"] not in skip_dirs and p not in ("/proc", "/sys", "/dev"):
                        stack.append(p)
                elif kind == "file":
                    files.append(p)
                    if len(files) >= limit:
                        return sorted(files), True
        return sorted(files), False

    # -- helpers -------------------------------------------------------------

    def _abs(self, path: str) -> str:
        return resolve(self.cwd, path)

    def _is_link(self, path: str) -> bool:
        try:
            self._fs.read_link(path)
            return True
        except Exception:
            return False

    @staticmethod
    def _call(path: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RuntimeError as exc:
            raise _os_error(str(exc), path) from None


def _consume(fut: asyncio.Future[Any]) -> None:
    # A cancelled exec leaves its future to finish unobserved: retrieve the outcome
    # so asyncio does not log "exception was never retrieved".
    if not fut.cancelled():
        fut.exception()


def _line(text: str | None) -> str:
    if not text:
        return ""
    return text if text.endswith("\n") else text + "\n"


# bashkit reports filesystem errors as RuntimeError("io error: <what>"); map them to
# the OSError subclasses Python code expects (and the local sandbox raises).
_ERRORS: list[tuple[str, type[OSError], int]] = [
    ("not a directory", NotADirectoryError, errno.ENOTDIR),
    ("is a directory", IsADirectoryError, errno.EISDIR),
    ("directory not empty", OSError, errno.ENOTEMPTY),
    ("not found", FileNotFoundError, errno.ENOENT),
    ("exists", FileExistsError, errno.EEXIST),
    ("read-only", PermissionError, errno.EROFS),
    ("readonly", PermissionError, errno.EROFS),
    ("full", OSError, errno.ENOSPC),
]


def _os_error(message: str, path: str) -> OSError:
    what = message.removeprefix("io error: ")
    for needle, cls, code in _ERRORS:
        if needle in what:
            return cls(code, what, path)
    return OSError(errno.EIO, what, path)
