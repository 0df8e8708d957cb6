"""Worker processes for virtual-sandbox commands: started on demand, shared, killable.

bashkit runs a command on a thread of its own runtime, and some of its
builtins loop without ever reaching a cancellation point (``awk
'BEGIN{while(1){}}'``): neither its timeout nor ``cancel()`` stops them, and
a thread cannot be killed. So commands run in worker processes
(:mod:`flue.sandbox.worker`), and a command that is still running after its
timeout plus a grace period is stopped by killing its worker.

- **Shared, few, on demand.** One process-wide pool of at most
  :data:`MAX_WORKERS` workers (one per CPU, 2 to 4; ``FLUE_SANDBOX_WORKERS``
  overrides it; each ~40 MB of RSS while it runs), started
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

The channel to a worker is :class:`flue.sandbox.channel.Helper`'s.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from flue.sandbox.channel import Helper
from flue.sandbox.frames import send_frame

MAX_WORKERS = max(2, min(4, os.cpu_count() or 2))  # busy workers are CPU-bound: about one per core
IDLE_S = 30.0  # a worker with nothing to do is stopped after this long
REPLICA_IDLE_S = 120.0  # a replica not used this long is dropped (reopened on the next command)
_REAP_EVERY = 5.0


class WorkerProcess(Helper):
    name = "sandbox worker"

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.busy = 0  # commands running
        self.links = 0  # replicas held
        self.idle_since = time.monotonic()
        self._drops: list[str] = []
        super().__init__("flue.sandbox.worker", env={})  # nothing of the server's environment

    def _send(self, header: dict[str, Any], blobs: list[bytes] | None, fds: Sequence[int]) -> None:
        # under self._lock: replicas to forget go first
        if self._drops:
            drops, self._drops = self._drops, []
            send_frame(self._sock, {"op": "drop", "id": 0, "rids": drops})
        send_frame(self._sock, header, blobs, fds)

    def drop_later(self, rid: str) -> None:
        """Forget a replica with the next request."""
        with self._lock:
            self._drops.append(rid)

    def gone(self) -> None:
        self.pool.forget(self)


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
