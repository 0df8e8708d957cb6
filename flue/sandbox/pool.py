"""Worker processes for virtual-sandbox commands: started on demand, shared, killable.

bashkit runs a command on a thread of its own runtime, and some of its
builtins loop without ever reaching a cancellation point (``awk
'BEGIN{while(1){}}'``): neither its timeout nor ``cancel()`` stops them, and
a thread cannot be killed. So commands run in worker processes
(:mod:`flue.sandbox.worker`), and a command that is still running after its
timeout plus a grace period is stopped by killing its worker.

- **Shared, few, on demand.** One process-wide pool of at most
  :data:`MAX_WORKERS` workers (``FLUE_SANDBOX_WORKERS`` overrides it), started
  by the first command and stopped after :data:`IDLE_S` seconds without work.
  Envs are spread over the workers (the least busy one, or a new one while
  fewer than the maximum run). No process exists per sandbox, and none while
  no command has run recently.
- **The env stays the authority.** A worker holds a *replica* of an env's
  filesystem (opened from a snapshot at the env's first command) and reports
  every change back with the command's result. Killing a worker loses only
  what its commands changed since they started.
- **Blast radius.** Commands of other envs on a killed worker end too (exit
  code 137, with a stderr line saying why): about one in :data:`MAX_WORKERS`
  of the envs running a command at that moment.
- **Lifetimes.** Workers get an empty environment and die with the server
  (``PR_SET_PDEATHSIG`` on Linux); a replica is dropped when its env is
  garbage collected or after :data:`REPLICA_IDLE_S` seconds unused.

Frames are written from the caller's thread (the event loop) and read by one
thread per worker, which hands each reply to the loop that asked (so the pool
serves any number of event loops, one after another, as tests do).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flue.sandbox.frames import FrameParser, write_frame

MAX_WORKERS = 4
IDLE_S = 30.0  # a worker with nothing to do is stopped after this long
REPLICA_IDLE_S = 120.0  # a replica not used this long is dropped (reopened on the next command)
_REAP_EVERY = 5.0

# The worker imports only bashkit, the frame codec and the output buffer: run the
# module from this checkout whatever the server's sys.path looked like.
_BOOT = "import sys; sys.path.insert(0, sys.argv.pop(1)); from flue.sandbox.worker import main; main()"
_ROOT = str(Path(__file__).resolve().parents[2])

Reply = tuple[dict[str, Any], list[bytes]]


class WorkerLost(Exception):
    """The worker died (killed, crashed) before it answered."""


class ReplyError(Exception):
    """The worker answered with an error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Pending:
    __slots__ = ("loop", "future", "on_reply")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Reply], on_reply: Any) -> None:
        self.loop, self.future, self.on_reply = loop, future, on_reply


def _deliver(p: _Pending, header: dict[str, Any], blobs: list[bytes]) -> None:
    """On the asking loop, in arrival order: apply the reply's changes even when nobody
    waits for it any more (a cancelled or timed-out caller), then resolve the future."""
    error: BaseException | None = None
    if not header.get("ok"):
        error = ReplyError(str(header.get("kind")), str(header.get("message")))
    elif p.on_reply is not None:
        try:
            p.on_reply(header, blobs)
        except Exception as exc:
            error = exc
    if p.future.done():
        return
    if error is not None:
        p.future.set_exception(error)
    else:
        p.future.set_result((header, blobs))


def _retrieve(future: asyncio.Future[Reply]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(p: _Pending, exc: BaseException) -> None:
    if not p.future.done():
        p.future.set_exception(exc)


class WorkerProcess:
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, _ROOT, str(req_r), str(rep_w), str(os.getpid())],
                pass_fds=(req_r, rep_w),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env={},  # nothing of the server's environment, secrets included
            )
        except BaseException:
            for fd in (req_r, req_w, rep_r, rep_w):
                os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                os.close(req_r)
                os.close(rep_w)
        self.pid = self.proc.pid
        self._wfd = req_w
        self._rfd = rep_r
        self._lock = threading.RLock()
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self.alive = True
        self.busy = 0  # commands running
        self.links = 0  # replicas held
        self.idle_since = time.monotonic()
        self._drops: list[str] = []
        threading.Thread(target=self._read, name=f"flue-sandbox-worker-{self.pid}", daemon=True).start()

    # -- requests ------------------------------------------------------------------

    def request(
        self, header: dict[str, Any], blobs: list[bytes] | None = None, *, on_reply: Callable[..., None] | None = None
    ) -> tuple[int, asyncio.Future[Reply]]:
        """Send a request; its reply resolves the future (``on_reply`` runs first, on this loop)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        future.add_done_callback(_retrieve)  # a caller that stopped waiting (timeout, cancel) leaves it
        with self._lock:
            if not self.alive:
                raise WorkerLost("the sandbox worker is gone")
            rid = next(self._ids)
            self._pending[rid] = _Pending(loop, future, on_reply)
            self._send({**header, "id": rid}, blobs)
        return rid, future

    def notify(self, header: dict[str, Any]) -> None:
        """Send a request that gets no reply (cancel, drop); a dead worker ignores it."""
        with self._lock:
            if self.alive:
                self._send({**header, "id": 0}, None)

    def _send(self, header: dict[str, Any], blobs: list[bytes] | None) -> None:
        # under self._lock
        if self._drops:
            drops, self._drops = self._drops, []
            self._write({"op": "drop", "id": 0, "rids": drops}, None)
        self._write(header, blobs)

    def _write(self, header: dict[str, Any], blobs: list[bytes] | None) -> None:
        try:
            write_frame(self._wfd, header, blobs)
        except OSError:
            self._pending.pop(header.get("id"), None)  # type: ignore[arg-type]
            raise WorkerLost("the sandbox worker is gone") from None

    def drop_later(self, rid: str) -> None:
        """Forget a replica with the next request."""
        with self._lock:
            self._drops.append(rid)

    # -- ending --------------------------------------------------------------------

    def kill(self) -> None:
        """Stop it for real (a command that ignores its deadline); pending requests fail."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Let it exit: it reads end-of-file and stops."""
        with self._lock:
            self.alive = False
            with contextlib.suppress(OSError):
                os.close(self._wfd)

    def _read(self) -> None:
        reason = "the sandbox worker exited"
        parser = FrameParser()
        try:
            while data := os.read(self._rfd, 1 << 20):
                for header, blobs in parser.feed(data):
                    with self._lock:
                        p = self._pending.pop(header.get("id"), None)  # type: ignore[arg-type]
                    if p is not None:
                        _call(p.loop, _deliver, p, header, blobs)
        except Exception as exc:
            reason = f"the sandbox worker sent a bad reply ({exc})"
            self.kill()
        finally:
            with self._lock:
                was_alive, self.alive = self.alive, False
                pending, self._pending = self._pending, {}
                if was_alive:
                    with contextlib.suppress(OSError):
                        os.close(self._wfd)
            for p in pending.values():
                _call(p.loop, _fail, p, WorkerLost(reason))
            os.close(self._rfd)
            self.proc.wait()
            self.pool.forget(self)


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
        loop.call_soon_threadsafe(fn, *args)


class Link:
    """An env's replica on a worker. ``claim()`` it around every request that needs it."""

    _ids = itertools.count(1)

    def __init__(self, pool: WorkerPool, worker: WorkerProcess) -> None:
        self.pool = pool
        self.worker = worker
        self.rid = f"r{os.getpid()}-{next(self._ids)}"
        self.users = 0
        self.used = time.monotonic()
        self.valid = True

    def claim(self, *, command: bool = False) -> bool:
        with self.pool.lock:
            if not (self.valid and self.worker.alive):
                return False
            self.users += 1
            self.used = time.monotonic()
            if command:
                self.worker.busy += 1
            return True

    def release(self, *, command: bool = False) -> None:
        with self.pool.lock:
            self.users -= 1
            self.used = time.monotonic()
            if command:
                self.worker.busy -= 1
                self.worker.idle_since = self.used

    def drop(self) -> None:
        """The env no longer uses this replica (it is gone or stale)."""
        with self.pool.lock:
            self._drop()

    def _drop(self) -> None:
        # under pool.lock
        if not self.valid:
            return
        self.valid = False
        self.pool.links.discard(self)
        self.worker.links -= 1
        self.worker.idle_since = time.monotonic()
        self.worker.drop_later(self.rid)


class LinkBox:
    """An env's current link; the env's finalizer hands the box to the pool."""

    __slots__ = ("link",)

    def __init__(self) -> None:
        self.link: Link | None = None


class WorkerPool:
    def __init__(self, max_workers: int) -> None:
        self.max_workers = max_workers
        self.lock = threading.RLock()
        self.workers: list[WorkerProcess] = []
        self.links: set[Link] = set()
        self._released: collections.deque[LinkBox] = collections.deque()
        self._reaper: threading.Thread | None = None

    def release_later(self, box: LinkBox) -> None:
        """From an env's finalizer (any thread, any moment): takes no lock."""
        self._released.append(box)

    def _drop_released(self) -> None:
        # under self.lock
        while self._released:
            link = self._released.popleft().link
            if link is not None:
                link._drop()

    def link(self) -> Link:
        """A new replica slot on the least busy worker (starting one when all are busy)."""
        with self.lock:
            self._drop_released()
            live = [w for w in self.workers if w.alive]
            best = min(live, key=lambda w: (w.busy, w.links), default=None)
            # spread replicas over up to max_workers processes: a kill then hits fewer envs
            if best is None or ((best.busy or best.links) and len(live) < self.max_workers):
                best = WorkerProcess(self)
                self.workers.append(best)
                self._start_reaper()
            best.links += 1
            link = Link(self, best)
            self.links.add(link)
            return link

    def forget(self, worker: WorkerProcess) -> None:
        with self.lock:
            if worker in self.workers:
                self.workers.remove(worker)
            for link in list(self.links):
                if link.worker is worker:
                    link.valid = False
                    self.links.discard(link)

    def reap(self, now: float | None = None) -> None:
        """Drop replicas unused for REPLICA_IDLE_S, stop workers idle for IDLE_S."""
        now = time.monotonic() if now is None else now
        with self.lock:
            self._drop_released()
            for link in list(self.links):
                if not link.users and now - link.used > REPLICA_IDLE_S:
                    link._drop()
            for w in list(self.workers):
                if w.alive and not w.busy and not w.links and now - w.idle_since > IDLE_S:
                    w.close()

    def shutdown(self) -> None:
        with self.lock:
            workers = list(self.workers)
        for w in workers:
            w.close()
            w.kill()

    def _start_reaper(self) -> None:
        # under self.lock
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_loop, name="flue-sandbox-reaper", daemon=True)
            self._reaper.start()

    def _reap_loop(self) -> None:
        while True:
            time.sleep(_REAP_EVERY)
            self.reap()
            with self.lock:
                if not self.workers:
                    self._reaper = None
                    return


_pool: WorkerPool | None = None
_pool_lock = threading.Lock()


def pool() -> WorkerPool:
    """The process-wide pool."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = WorkerPool(_max_workers())
        return _pool


def _max_workers() -> int:
    raw = os.environ.get("FLUE_SANDBOX_WORKERS", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return MAX_WORKERS


def _reset_after_fork() -> None:
    # a forked child has none of the parent's reader threads: start over
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_reset_after_fork)
