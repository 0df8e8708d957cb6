"""``flue start --workers N``: N server processes on one port, sharing one store.

Each worker is a whole ``flue start`` (HTTP server, coordinator, run
recovery) that binds the port with ``SO_REUSEPORT``, so the kernel spreads new
connections over them. They share the project's persistence adapter, which is
what keeps the exactly-once guarantees: admission, claims, leases and
settlement are transactions in the store, exactly as with several replicas on
several hosts. An in-memory SQLite database is private to its process, so it is
refused.

The parent (this module) reserves the port (bound, never listening: the
kernel gives connections only to listening sockets), starts the workers, waits
until each is listening, restarts one that dies (a few times a minute at most)
and, on SIGTERM or SIGINT, passes SIGTERM to every worker and waits for their
graceful stop (``--grace``) before it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

READY_FD = "FLUE_READY_FD"  # a worker writes one byte to this pipe once it is listening
WORKER = "FLUE_WORKER"  # "i/N", for the worker's log lines
START_TIMEOUT = 120.0  # seconds for a worker to load the project and listen
MAX_RESTARTS = 5  # per RESTART_WINDOW; past it the parent gives up
RESTART_WINDOW = 60.0


def shared_store_problem(project: Any) -> str | None:
    """Why this project's persistence cannot be shared by worker processes, or None."""
    persistence = project.config.persistence
    if persistence.kind == "sqlite" and str(persistence.options.get("path") or ":memory:") == ":memory:":
        return (
            "--workers needs persistence the worker processes share, but this project keeps its state in an "
            "in-memory SQLite database (one per process); set a file in flue.yaml, e.g. "
            "'persistence: {kind: sqlite, path: .state/flue.db}', or use PostgreSQL"
        )
    return None


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with SO_REUSEPORT, not listening (picks the port for port 0)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


class _Stop(Exception):
    pass


def supervise(args: argparse.Namespace, project: Any, port: int) -> int:
    from flue.server.serve import url_for

    problem = shared_store_problem(project)
    if problem is not None:
        print(f"flue start: {problem}", file=sys.stderr)
        return 1
    if not hasattr(socket, "SO_REUSEPORT"):
        print("flue start: --workers needs SO_REUSEPORT, which this platform lacks", file=sys.stderr)
        return 1
    try:
        reserved = reserve_port(args.host, port)
    except OSError as exc:
        print(f"flue start: cannot listen on {args.host}:{port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    port = int(reserved.getsockname()[1])
    stopping: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    pool = _Pool(args, port)
    try:
        try:
            pool.start_all(stopping)
        except _Stop as exc:
            if str(exc):
                print(f"flue start: {exc}", file=sys.stderr)
            return 0 if stopping else 1
        print(f"flue start: serving {project.root} on {url_for(args.host, port)}{args.prefix_path} "
              f"with {args.workers} workers", file=sys.stderr, flush=True)
        try:
            pool.watch(stopping)
        except _Stop as exc:
            print(f"flue start: {exc}", file=sys.stderr)
            return 1
        print("flue start: shutting down", file=sys.stderr, flush=True)
        return 0
    finally:
        codes = pool.stop_all(args.grace)
        reserved.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
        if any(code not in (0, None) for code in codes) and stopping:
            print(f"flue start: worker exit codes {codes}", file=sys.stderr)


class _Pool:
    def __init__(self, args: argparse.Namespace, port: int):
        self.args = args
        self.port = port
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * args.workers
        self.restarts: list[float] = []

    def _argv(self) -> list[str]:
        a = self.args
        argv = [sys.executable, "-m", "flue", "start", "--root", str(a.root), "--host", a.host, "--port", str(self.port),
                "--grace", str(a.grace), "--loop", a.loop, "--reuse-port"]
        if a.prefix:
            argv += ["--prefix", a.prefix]
        if a.env_file:
            argv += ["--env", a.env_file]
        return argv

    def _spawn(self, i: int, stopping: list[int]) -> None:
        """Start worker ``i`` and wait until it listens."""
        read_fd, write_fd = os.pipe()
        env = dict(os.environ, **{READY_FD: str(write_fd), WORKER: f"{i + 1}/{len(self.procs)}"})
        try:
            proc = subprocess.Popen(self._argv(), env=env, pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                    preexec_fn=_die_with_parent)
        finally:
            os.close(write_fd)
        self.procs[i] = proc
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                if stopping:
                    raise _Stop("")
                ready, _, _ = select.select([read_fd], [], [], 0.2)
                if ready and os.read(read_fd, 1):
                    return
                if proc.poll() is not None:
                    raise _Stop(f"worker {i + 1} exited with code {proc.returncode} before it was listening")
                if time.monotonic() > deadline:
                    raise _Stop(f"worker {i + 1} was not listening after {START_TIMEOUT:g} s")
        finally:
            os.close(read_fd)

    def start_all(self, stopping: list[int]) -> None:
        for i in range(len(self.procs)):
            self._spawn(i, stopping)

    def watch(self, stopping: list[int]) -> None:
        """Until a signal: restart workers that exit (a few per minute at most)."""
        while not stopping:
            time.sleep(0.2)
            for i, proc in enumerate(self.procs):
                if stopping or proc is None or proc.poll() is None:
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    raise _Stop(f"workers exited {len(self.restarts)} times within {RESTART_WINDOW:g} s; giving up")
                print(f"flue start: worker {i + 1} exited with code {proc.returncode}; starting it again",
                      file=sys.stderr, flush=True)
                self._spawn(i, stopping)

    def stop_all(self, grace: float) -> list[int | None]:
        """SIGTERM every worker, wait for the graceful stop (grace and some), then SIGKILL."""
        live = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 15.0
        for proc in live:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=10)
        return [p.returncode if p is not None else None for p in self.procs]


def _die_with_parent() -> None:
    """In the forked worker (Linux): SIGTERM when the parent dies, even by SIGKILL, so no worker
    outlives its supervisor."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def signal_ready() -> None:
    """In a worker: tell the parent it is listening (no-op when not started by ``--workers``)."""
    fd = os.environ.pop(READY_FD, None)
    if fd is None:
        return
    with contextlib.suppress(OSError, ValueError):
        os.write(int(fd), b"1")
        os.close(int(fd))
