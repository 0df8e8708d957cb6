"""Helper processes of the built-in sandboxes, and the request/reply channel to them.

A helper is a Python process running one module's ``main()``
(:mod:`flue.sandbox.worker` for virtual-sandbox commands,
:mod:`flue.sandbox.launcher` for local ones), connected by a Unix socket
pair over which frames (:mod:`flue.sandbox.frames`) go both ways: requests
with an ``id``, replies with the same ``id``. A reply with ``"more": true``
is not the last one for its request.

Requests are sent from the asking thread (an event loop); one reader thread
per helper hands each reply to the loop that asked, in arrival order, so a
helper serves any number of event loops (one after another, as tests do).
When a helper dies, every request still waiting fails with
:class:`HelperLost`.

A helper starts with the environment it is given (never the server's whole
environment: it holds secrets), with ``-I`` (no ``PYTHON*`` variables, no user
site-packages), and exits when the server closes its end or dies
(:func:`die_with_parent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from flue.sandbox.frames import FrameParser, send_frame

# Helpers import only what they need from this checkout, whatever the server's sys.path.
_BOOT = (
    "import sys, importlib; sys.path.insert(0, sys.argv.pop(1)); "
    "importlib.import_module(sys.argv.pop(1)).main()"
)
_ROOT = str(Path(__file__).resolve().parents[2])

Reply = tuple[dict[str, Any], list[bytes]]
OnReply = Callable[[dict[str, Any], list[bytes]], None]


class HelperLost(Exception):
    """The helper died (killed, crashed, closed) before it answered."""


class ReplyError(Exception):
    """The helper answered with an error: ``kind`` says which, ``errno`` is set for OS errors."""

    def __init__(self, kind: str, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.errno = errno


class _Pending:
    __slots__ = ("loop", "future", "on_reply")

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Reply], on_reply: OnReply | None):
        self.loop, self.future, self.on_reply = loop, future, on_reply


def _deliver(p: _Pending, header: dict[str, Any], blobs: list[bytes]) -> None:
    """On the asking loop, in arrival order. ``on_reply`` runs even when nobody waits any
    more (a cancelled or timed-out caller): what a reply reports must not be lost."""
    error: BaseException | None = None
    if not header.get("ok"):
        error = ReplyError(str(header.get("kind")), str(header.get("message")), header.get("errno"))
    elif p.on_reply is not None:
        try:
            p.on_reply(header, blobs)
        except Exception as exc:
            error = exc
    if p.future.done() or header.get("more") and error is None:
        return
    if error is not None:
        p.future.set_exception(error)
    else:
        p.future.set_result((header, blobs))


def _fail(p: _Pending, exc: BaseException) -> None:
    if not p.future.done():
        p.future.set_exception(exc)


def _retrieve(future: asyncio.Future[Reply]) -> None:
    if not future.cancelled():
        future.exception()


def _call(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
        loop.call_soon_threadsafe(fn, *args)


class Helper:
    """One helper process and the channel to it."""

    name = "sandbox helper"

    def __init__(self, module: str, *, env: Mapping[str, str] | None = None) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, _ROOT, module, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=dict(env or {}),
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pid = self.proc.pid
        self._sock = ours
        self._lock = threading.RLock()  # sends; re-entrant for a finalizer that runs mid-send
        self._pending: dict[int, _Pending] = {}
        self._ids = itertools.count(1)
        self.alive = True
        threading.Thread(target=self._read, name=f"flue-{module.rsplit('.', 1)[-1]}-{self.pid}", daemon=True).start()

    def request(
        self,
        header: dict[str, Any],
        blobs: list[bytes] | None = None,
        *,
        fds: Sequence[int] = (),
        on_reply: OnReply | None = None,
    ) -> tuple[int, asyncio.Future[Reply]]:
        """Send a request; its last reply resolves the future (``on_reply`` sees every reply
        first, on this loop). Raises :class:`HelperLost` when the helper is gone."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        future.add_done_callback(_retrieve)  # a caller that stopped waiting (timeout, cancel) leaves it
        with self._lock:
            if not self.alive:
                raise HelperLost(f"the {self.name} is gone")
            rid = next(self._ids)
            self._pending[rid] = _Pending(loop, future, on_reply)
            try:
                self._send({**header, "id": rid}, blobs, fds)
            except OSError:
                self._pending.pop(rid, None)
                raise HelperLost(f"the {self.name} is gone") from None
        return rid, future

    def notify(self, header: dict[str, Any]) -> None:
        """Send a request that gets no reply; a dead helper ignores it."""
        with self._lock:
            if self.alive:
                with contextlib.suppress(OSError):
                    self._send({**header, "id": 0}, None, ())

    def _send(self, header: dict[str, Any], blobs: list[bytes] | None, fds: Sequence[int]) -> None:
        # under self._lock
        send_frame(self._sock, header, blobs, fds)

    def kill(self) -> None:
        """Stop it for real; requests still waiting fail."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """Let it exit: it reads end-of-file and stops."""
        with self._lock:
            self.alive = False
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_WR)

    def gone(self) -> None:
        """Called (on the reader thread) once the helper has exited and been reaped."""

    def _read(self) -> None:
        reason = f"the {self.name} exited"
        parser = FrameParser()
        try:
            while data := self._sock.recv(1 << 20):
                for header, blobs in parser.feed(data):
                    with self._lock:
                        rid: int = header.get("id", -1)
                        p = self._pending.get(rid) if header.get("more") else self._pending.pop(rid, None)
                    if p is not None:
                        _call(p.loop, _deliver, p, header, blobs)
        except Exception as exc:
            reason = f"the {self.name} sent a bad reply ({exc})"
            self.kill()
        finally:
            with self._lock:
                self.alive = False
                pending, self._pending = self._pending, {}
            for p in pending.values():
                _call(p.loop, _fail, p, HelperLost(reason))
            self._sock.close()
            self.proc.wait()
            self.gone()


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> None:
    """In a helper: have the kernel send ``sig`` when the server dies (Linux), even mid-work."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that took effect
        os._exit(0)


def helper_args() -> tuple[socket.socket, int]:
    """In a helper: its end of the socket pair and the server's pid, from ``sys.argv``."""
    fd, parent = int(sys.argv[1]), int(sys.argv[2])
    return socket.socket(fileno=fd), parent
