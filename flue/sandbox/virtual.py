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
      max_loop_iterations: 10000000   # bashkit's budget per loop; null for none (the timeout still holds)
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
- The shell uses bashkit's ``Interactive`` profile (no command-count cap), a
  per-loop budget (``max_loop_iterations``, 10,000,000 by default: a runaway
  ``awk`` loop fails within a second with bashkit's message, exit code 2) and
  always a wall-clock timeout: a command still running at its timeout ends with
  exit code 124 and a stderr line saying so. A per-command shell also makes
  every command's timeout its own, and lets commands run concurrently.

**Commands run in worker processes** (:mod:`flue.sandbox.pool`), because some
bashkit builtins loop without ever checking their timeout or a cancellation
(``awk 'BEGIN{while(1){}}'`` with the loop budget lifted), and a thread cannot
be stopped. A command still running :func:`kill_grace` seconds past its
timeout has its worker killed: ``exec`` returns 124 within about a second of
the timeout, the CPU is free again, and the env stays usable. What that
command printed or changed is lost (say so in stderr); what earlier commands
did is not. How it works:

- At its first command, an env's filesystem is copied into a worker (a
  *replica*, from a snapshot). The env's own filesystem stays the authority:
  after each command the worker reports what changed (paths, contents, modes,
  links), and the env applies it before ``exec`` returns. File operations of
  the env itself (``write_file``...) are replayed into the replica before its
  next command; while a command runs they are made in the replica, and reads
  first fetch what running commands changed so far, so concurrent commands
  and tools see each other's files as before.
- Cancelling the asyncio task of an ``exec`` asks the worker to ``cancel()``
  the command's shell (it stops at the next command boundary) and waits up to
  :data:`CANCEL_GRACE` seconds for what it changed; a command that does not
  stop has its worker killed.
- Commands of other envs on a killed worker end with exit code 137 and a
  stderr line saying why (rare: envs are spread over several workers).
- Output is streamed into bounded buffers (the last 8 MiB of each stream).
- Costs: a worker starts in ~50 ms at the first command and is stopped when
  idle; an env that never runs a command costs no process and no replica.
  ``benchmarks/sandbox_exec.py`` measures a command both ways.

Network access is off unless ``network.allow`` lists URL prefixes.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import posixpath
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import bashkit
from pydantic import BaseModel, ConfigDict, Field

from flue.sandbox.base import TIMEOUT_EXIT_CODE, ExecResult, FileStat, SandboxRequest
from flue.sandbox.channel import HelperLost, Reply, ReplyError
from flue.sandbox.options import parse_options
from flue.sandbox.output import join_stderr, timeout_message
from flue.sandbox.paths import resolve
from flue.sandbox.pool import Link, LinkBox, pool
from flue.sandbox.seeding import apply_seeds, read_folder
from flue.sandbox.worker import is_link

log = logging.getLogger("flue.sandbox")

DEFAULT_CWD = "/workspace"
DEFAULT_TIMEOUT = 120.0
# bashkit's per-loop budget: a runaway loop in awk (65M empty iterations/s) fails in
# well under a second with bashkit's own message, long before any timeout.
DEFAULT_MAX_LOOP_ITERATIONS = 10_000_000
# How long a cancelled exec waits for its command to reach a command boundary.
CANCEL_GRACE = 2.0
# Past its timeout, how long a command may take to stop (plus 5% of the timeout)
# before its worker is killed; see kill_grace().
KILL_GRACE = 1.0
# Our own changes are replayed into the replica before its next command up to this
# much; beyond it the replica is dropped and a snapshot is sent instead.
JOURNAL_MAX_BYTES = 4 * 1024 * 1024
JOURNAL_MAX_OPS = 1000
WEDGED_MESSAGE = (
    "flue: the command did not stop at its time limit, so the process running it was killed; "
    "its output and its file changes since it started are lost\n"
)
LOST_EXIT_CODE = 137
LOST_MESSAGE = (
    "flue: the sandbox process running this command ended before it finished (another command in it "
    "ran past its time limit, or it crashed); its output and its file changes since it started are lost\n"
)

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
    max_loop_iterations: int | None = Field(
        DEFAULT_MAX_LOOP_ITERATIONS, ge=1000, description="bashkit's budget per loop (bash, awk); null: none"
    )


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
    from flue.authoring.source import resolve_source_root

    return resolve_source_root(Path.cwd())


class VirtualSandboxFactory:
    def __init__(self, options: VirtualOptions | None = None, *, workspace: Path | None = None) -> None:
        self.options = options or VirtualOptions()
        self.workspace = workspace

    async def create_session_env(self, request: SandboxRequest) -> VirtualSandboxEnv:
        cwd = resolve("/", request.cwd or DEFAULT_CWD)
        if request.snapshot is None and self.workspace is None and not request.files:
            # Nothing to restore or seed: the filesystem is made when something first needs
            # more than "does this path exist" (most prompts never touch it).
            return VirtualSandboxEnv(None, cwd=cwd, options=self.options)
        if request.snapshot is not None:
            holder = await asyncio.to_thread(_restore, request.snapshot)
        else:
            holder = bashkit.Bash()
        env = VirtualSandboxEnv(holder, cwd=cwd, options=self.options, snapshot=request.snapshot)
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

    def __init__(
        self,
        holder: Any,
        *,
        cwd: str = DEFAULT_CWD,
        options: VirtualOptions | None = None,
        snapshot: bytes | None = None,
    ) -> None:
        # ``holder`` owns the filesystem and never runs a command (see module docs); None: a
        # fresh one holding only the cwd, made on first use (see _materialize)
        self._holder_obj = holder
        self._fs_obj = holder.fs() if holder is not None else None
        self._lazy = holder is None
        self.cwd = cwd
        self.options = options or VirtualOptions()
        self._gen = 0  # bumped by every change to the filesystem
        self._snapshot: tuple[int, bytes] | None = (0, snapshot) if snapshot is not None else None
        self._box = LinkBox()  # the replica in a worker, once a command ran
        self._journal: list[list[Any]] = []  # our own changes the replica has not seen yet
        self._journal_blobs: list[bytes] = []
        self._journal_bytes = 0
        self._running = 0  # commands running in the replica
        self._opening: asyncio.Lock | None = None
        weakref.finalize(self, pool().release_later, self._box)

    # -- shell ---------------------------------------------------------------

    async def exec(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None  # noqa: ASYNC109 (the SandboxEnv contract)
    ) -> ExecResult:
        run_cwd = self._abs(cwd) if cwd else self.cwd
        if not (self._fs_obj is None and self._made_dir(run_cwd)):  # (the cwd of an env not made yet is there)
            st = await self.stat(run_cwd)  # FileNotFoundError for a missing cwd, like a subprocess would
            if not st.is_directory:
                raise NotADirectoryError(errno.ENOTDIR, "working directory is not a directory", run_cwd)
        seconds = self.options.timeout if timeout is None else float(timeout)
        if seconds <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        request: dict[str, Any] = {
            "op": "exec",
            "command": command,
            "cwd": run_cwd,
            "env": {**self.options.env, **(env or {})},
            "timeout": seconds,
            "network": self.options.network.model_dump() if self.options.network else None,
            "python": self.options.python,
            "sqlite": self.options.sqlite,
            "max_loop_iterations": self.options.max_loop_iterations,
        }
        for attempt in (1, 2):
            link = await self._link()
            ops, blobs = self._take_journal() if not self._running else ([], [])
            if not link.claim(command=True):
                continue
            self._running += 1
            try:
                try:
                    xid, reply = link.worker.request({**request, "rid": link.rid, "ops": ops}, blobs, on_reply=self._on_changes)
                except HelperLost:
                    self._lose(link)
                    continue  # it never reached the worker: run it on another one
                return await self._await_command(link, xid, reply, seconds)
            except ReplyError as exc:
                self._lose(link)
                if exc.kind == "unknown_replica" and attempt == 1:
                    continue  # the worker dropped the replica: open it again
                raise RuntimeError(f"virtual sandbox: {exc}") from None
            finally:
                self._running -= 1
                link.release(command=True)
        raise RuntimeError("virtual sandbox: no worker could run the command")

    async def _await_command(self, link: Link, xid: int, reply: asyncio.Future[Reply], seconds: float) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            header, blobs = await asyncio.wait_for(asyncio.shield(reply), seconds + kill_grace(seconds))
        except TimeoutError:
            # The command did not stop at its time limit (a builtin that never reaches a
            # cancellation point): stop its worker, the only way to stop it.
            link.worker.kill()
            self._lose(link)
            return ExecResult("", timeout_message(seconds) + WEDGED_MESSAGE, TIMEOUT_EXIT_CODE)
        except HelperLost:
            self._lose(link)
            if loop.time() - started >= seconds:  # past its own limit anyway (another wedged command's kill)
                return ExecResult("", timeout_message(seconds) + WEDGED_MESSAGE, TIMEOUT_EXIT_CODE)
            return ExecResult("", LOST_MESSAGE, LOST_EXIT_CODE)
        except asyncio.CancelledError:
            # Cancelling the wait does not stop the command: ask the worker to stop it (at the
            # next command boundary) and keep what it changed; kill it when it does not stop.
            link.worker.notify({"op": "cancel", "target": xid})
            try:
                await asyncio.wait_for(asyncio.shield(reply), CANCEL_GRACE)
            except TimeoutError:
                link.worker.kill()
                self._lose(link)
            except Exception:
                self._lose(link)
            raise
        stdout, stderr = blobs[0].decode(), blobs[1].decode()
        if header.get("timed_out"):
            return ExecResult(stdout, join_stderr(stderr, timeout_message(seconds)), TIMEOUT_EXIT_CODE)
        # With sinks, the result's stderr holds only bashkit's own message (a limit, a parse error).
        return ExecResult(stdout, join_stderr(stderr, _line(header.get("message"))), int(header["exit_code"]))

    # -- the filesystem's holder ----------------------------------------------

    @property
    def _holder(self) -> Any:
        if self._holder_obj is None:
            self._materialize()
        return self._holder_obj

    @_holder.setter
    def _holder(self, holder: Any) -> None:
        self._holder_obj, self._fs_obj = holder, holder.fs()

    @property
    def _fs(self) -> Any:
        if self._fs_obj is None:
            self._materialize()
        return self._fs_obj

    def _materialize(self) -> None:
        holder = bashkit.Bash()
        holder.fs().mkdir(self.cwd, recursive=True)
        self._holder = holder

    @property
    def pristine(self) -> bool:
        """Made fresh (no snapshot, no seeds) and unchanged since: it holds only the cwd, so a
        snapshot of it restores nothing a new env lacks (callers need not store one)."""
        return self._lazy and self._gen == 0

    # -- the replica -----------------------------------------------------------

    async def _link(self) -> Link:
        """This env's replica in a worker, opened from a snapshot when there is none."""
        link = self._box.link
        if link is not None and link.valid and link.worker.alive:
            return link
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            for _ in range(3):
                link = self._box.link
                if link is not None and link.valid and link.worker.alive:
                    return link
                self._lose(link)
                gen = self._gen
                link = pool().link()
                if self._fs_obj is None:  # not made here yet: the replica starts as a fresh one, like ours would
                    request, blobs = {"op": "open", "rid": link.rid, "fresh": self.cwd}, []
                else:
                    request, blobs = {"op": "open", "rid": link.rid}, [await self.snapshot()]
                try:
                    _, opened = link.worker.request(request, blobs)
                    await opened
                except (HelperLost, ReplyError):
                    link.drop()
                    continue
                if gen != self._gen:  # changed while the snapshot travelled: it is stale
                    link.drop()
                    continue
                self._box.link = link
                return link
        raise RuntimeError("virtual sandbox: could not start a sandbox worker")

    def _lose(self, link: Link | None) -> None:
        """Forget a replica (gone, stale or unusable); our filesystem is the authority."""
        if link is not None:
            link.drop()
        if self._box.link is link:
            self._box.link = None
            self._journal, self._journal_blobs, self._journal_bytes = [], [], 0

    def _changed(self, op: list[Any], data: bytes | None = None) -> None:
        """Record one of our own changes, for the replica to replay before its next command."""
        self._gen += 1
        if self._box.link is None:
            return
        if data is not None:
            op = [*op, len(self._journal_blobs)]
            self._journal_blobs.append(data)
            self._journal_bytes += len(data)
        self._journal.append(op)
        if self._journal_bytes > JOURNAL_MAX_BYTES or len(self._journal) > JOURNAL_MAX_OPS:
            self._lose(self._box.link)  # cheaper to send a snapshot next time

    def _take_journal(self) -> tuple[list[list[Any]], list[bytes]]:
        ops, blobs = self._journal, self._journal_blobs
        self._journal, self._journal_blobs, self._journal_bytes = [], [], 0
        return ops, blobs

    async def _forward(self, ops: list[list[Any]], blobs: list[bytes] | None = None) -> bool:
        """While commands run, the replica is where files change: apply ``ops`` there (its
        reply brings them back here, in order). False when there is no replica to use."""
        link = self._box.link
        if link is None or not link.claim():
            return False
        try:
            _, reply = link.worker.request({"op": "apply", "rid": link.rid, "ops": ops}, blobs, on_reply=self._on_changes)
            await reply
            return True
        except HelperLost:
            self._lose(link)
            return False
        except ReplyError as exc:
            if exc.kind == "unknown_replica":
                self._lose(link)
                return False
            raise _os_error(str(exc), ops[0][1]) from None
        finally:
            link.release()

    async def _catch_up(self) -> None:
        """While commands run, fetch what they changed so far before reading."""
        if not self._running:
            return
        link = self._box.link
        if link is None or not link.claim():
            return
        try:
            _, reply = link.worker.request({"op": "sync", "rid": link.rid}, on_reply=self._on_changes)
            await reply
        except (HelperLost, ReplyError):
            pass
        finally:
            link.release()

    def _on_changes(self, header: dict[str, Any], blobs: list[bytes]) -> None:
        """Apply what the replica reports changed (on the loop, in the order it was sent)."""
        if header.get("snapshot") is not None:  # it could not say what changed: take all of it
            self._holder = _restore(blobs[int(header["snapshot"])])
            self._gen += 1
            self._lose(self._box.link)  # the worker dropped it
            return
        changes = header.get("changes")
        if not changes:
            return
        self._gen += 1
        if not apply_changes(self._fs, changes, blobs[int(header.get("files_at") or 0):]):
            log.warning("virtual sandbox: could not apply a command's file changes; continuing from this copy")
            self._lose(self._box.link)  # start over from our own state

    # -- files ---------------------------------------------------------------

    async def read_file(self, path: str) -> str:
        return (await self.read_file_bytes(path)).decode("utf-8", errors="replace")

    async def read_file_bytes(self, path: str) -> bytes:
        p = self._abs(path)
        await self._catch_up()
        return bytes(self._call(p, lambda: self._fs.read_file(p)))

    async def write_file(self, path: str, content: str | bytes) -> None:
        """Create or replace a file, creating missing parent directories."""
        p = self._abs(path)
        data = content.encode("utf-8") if isinstance(content, str) else bytes(content)
        if self._running and await self._forward([["w", p, 0]], [data]):
            return
        parent = posixpath.dirname(p)
        if not self._fs.exists(parent):
            self._call(parent, lambda: self._fs.mkdir(parent, recursive=True))
        self._call(p, lambda: self._fs.write_file(p, data))
        self._changed(["w", p], data)

    async def stat(self, path: str) -> FileStat:
        p = self._abs(path)
        await self._catch_up()
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

    def _made_dir(self, p: str) -> bool:
        """Whether absolute ``p`` is the cwd or one of its parents (all a fresh env holds)."""
        return p == "/" or p == self.cwd or self.cwd.startswith(p.rstrip("/") + "/")

    async def exists(self, path: str) -> bool:
        if self._fs_obj is None:  # not made yet: only the cwd and its parents exist
            return self._made_dir(self._abs(path))
        await self._catch_up()
        try:
            return bool(self._fs.exists(self._abs(path)))
        except Exception:
            return False

    async def mkdir(self, path: str, *, recursive: bool = False) -> None:
        p = self._abs(path)
        if await self.exists(p):
            st = await self.stat(p)
            if recursive and st.is_directory:
                return
            raise FileExistsError(errno.EEXIST, "file exists", p)
        if self._running and await self._forward([["m", p, recursive]]):
            return
        self._call(p, lambda: self._fs.mkdir(p, recursive=recursive))
        self._changed(["m", p, recursive])

    async def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None:
        p = self._abs(path)
        if not await self.exists(p):
            if force:
                return
            raise FileNotFoundError(errno.ENOENT, "no such file or directory", p)
        st = await self.stat(p)
        if st.is_directory and not st.is_symbolic_link and not recursive:
            raise IsADirectoryError(errno.EISDIR, "is a directory (pass recursive=True)", p)
        if self._running and await self._forward([["r", p, recursive]]):
            return
        self._call(p, lambda: self._fs.remove(p, recursive=recursive))
        self._changed(["r", p, recursive])

    # -- persistence and fast paths -------------------------------------------

    async def snapshot(self) -> bytes:
        """The whole filesystem as bytes, for ``SandboxRequest.snapshot``."""
        await self._catch_up()
        if self._snapshot is not None and self._snapshot[0] == self._gen:
            return self._snapshot[1]  # nothing changed since the last one (or the restore)
        gen = self._gen
        data = bytes(await asyncio.to_thread(self._holder.snapshot))
        if gen == self._gen:
            self._snapshot = (gen, data)
        return data

    async def walk_files(self, root: str, *, skip_dirs: frozenset[str], limit: int) -> tuple[list[str], bool]:
        """Regular files under ``root``, one ``read_dir`` per directory (see flue.sandbox.walk)."""
        await self._catch_up()
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
        return is_link(self._fs, path)

    @staticmethod
    def _call(path: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except RuntimeError as exc:
            raise _os_error(str(exc), path) from None


def kill_grace(seconds: float) -> float:
    """How long past its timeout a command may take to stop before its worker is killed
    (bashkit's own timeout normally ends it within ~0.1 s)."""
    return KILL_GRACE + seconds * 0.05


def apply_changes(fs: Any, changes: dict[str, Any], blobs: list[bytes]) -> bool:
    """Make ``fs`` match a replica's report (see :mod:`flue.sandbox.worker`); False if a path
    could not be written (the caller then stops trusting the replica)."""
    ok = True
    for path in sorted(changes.get("rm") or [], key=len):  # parents first: children go with them
        if fs.exists(path) or is_link(fs, path):
            try:
                fs.remove(path, recursive=True)
            except Exception:
                ok = False
    for path, kind, mode, x in sorted(changes.get("put") or [], key=lambda e: (e[0].count("/"), e[0])):
        try:
            link = is_link(fs, path)
            if link or fs.exists(path):
                is_dir = not link and fs.stat(path).get("file_type") == "directory"
                if link or kind != "d" or not is_dir:
                    fs.remove(path, recursive=True)
            parent = posixpath.dirname(path)
            if parent and not fs.exists(parent):
                fs.mkdir(parent, recursive=True)
            if kind == "l":
                fs.symlink(x, path)
                continue
            if kind == "d":
                if not fs.exists(path):
                    fs.mkdir(path)
            else:
                fs.write_file(path, blobs[x])
            fs.chmod(path, int(mode))
        except Exception:
            ok = False
    return ok


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
