"""The process local-sandbox commands are started from (see :mod:`flue.sandbox.local`).

A command's parent is what ``$PPID`` names, and ``/proc/$PPID/environ`` is
readable by the command: if the server started commands itself, that would
be the server's whole environment, secrets included. So the server starts
this launcher once (a :class:`flue.sandbox.channel.Helper`) with only the
allow-listed variables, and the launcher starts every command.

Requests: ``{"op": "spawn", "argv": [...], "cwd": ..., "env": {...}}`` with
two file descriptors (the command's stdout and stderr pipes, SCM_RIGHTS).
Replies: ``{"pid": n, "more": true}`` once the command runs (each command in a
new session, so its pid is its process group), then ``{"exit": code}`` when
it ends (negative: killed by that signal); or an error with ``errno`` when it
could not start. The server kills process groups itself (same user).

When the server closes its end or dies (``SIGTERM`` via
``PR_SET_PDEATHSIG``), the launcher kills the process groups of the commands
still running and exits. Only the standard library and Flue's frame codec
are imported here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import selectors
import signal
import subprocess
import sys
from typing import Any

from flue.sandbox.channel import die_with_parent, helper_args
from flue.sandbox.frames import FrameError, FrameParser, recv_fds, send_frame


class Launcher:
    def __init__(self) -> None:
        self.sock, parent = helper_args()
        die_with_parent(parent, signal.SIGTERM)
        self.children: dict[int, tuple[Any, subprocess.Popen[bytes]]] = {}  # pid -> (request id, process)
        self.fds: collections.deque[int] = collections.deque()  # received, not yet given to a request
        self.stopping = False

    def serve(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup fd is what matters
        signal.signal(signal.SIGTERM, self._stop)
        selector = selectors.DefaultSelector()
        selector.register(self.sock, selectors.EVENT_READ, "requests")
        selector.register(wake_r, selectors.EVENT_READ, "signals")
        parser = FrameParser()
        while not self.stopping:
            for key, _ in selector.select():
                if key.data == "signals":
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_r, 512)
                    continue
                data, fds = recv_fds(self.sock)
                self.fds.extend(fds)
                if not data:
                    self.stopping = True
                    break
                try:
                    frames = parser.feed(data)
                except FrameError:
                    self.stopping = True
                    break
                for header, _blobs in frames:
                    self.spawn(header)
            self.reap()
        self.kill_all()

    def spawn(self, header: dict[str, Any]) -> None:
        rid = header.get("id")
        if len(self.fds) < 2:
            self.reply({"id": rid, "ok": False, "kind": "error", "message": "spawn without its output pipes"})
            return
        out, err = self.fds.popleft(), self.fds.popleft()
        try:
            proc = subprocess.Popen(
                header["argv"],
                cwd=header["cwd"],
                env=header["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, so the server can kill all of it
            )
        except OSError as exc:
            self.reply({"id": rid, "ok": False, "kind": "os", "errno": exc.errno,
                        "message": exc.strerror or str(exc)})
            return
        except Exception as exc:
            self.reply({"id": rid, "ok": False, "kind": "error", "message": str(exc)})
            return
        finally:
            os.close(out)
            os.close(err)
        self.children[proc.pid] = (rid, proc)
        self.reply({"id": rid, "ok": True, "pid": proc.pid, "more": True})

    def reap(self) -> None:
        for pid, (rid, proc) in list(self.children.items()):
            code = proc.poll()
            if code is not None:
                del self.children[pid]
                self.reply({"id": rid, "ok": True, "exit": code})

    def reply(self, header: dict[str, Any]) -> None:
        try:
            send_frame(self.sock, header)
        except OSError:
            self.stopping = True

    def kill_all(self) -> None:
        for pid in self.children:
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)

    def _stop(self, *_: Any) -> None:
        self.stopping = True


def main() -> None:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    Launcher().serve()
    sys.exit(0)
