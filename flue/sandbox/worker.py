"""The process that runs virtual-sandbox commands (see :mod:`flue.sandbox.pool`).

A worker holds *replicas*: copies of virtual filesystems, each opened from a
snapshot of the env that owns it. It runs commands over them with bashkit,
several at once, and after each command (or when asked) reports what changed
since the last report, so the owner's filesystem (the authority) follows. The
changes come from bashkit's content-addressed commits: commit, diff against
the last reported commit, send the paths that differ.

The owner kills a worker whose command does not end by its deadline: that is
the one way to stop a bashkit builtin that never reaches a cancellation point
(``awk 'BEGIN{while(1){}}'``). Nothing here needs to survive that: the owner
still has every change reported so far.

Started by the pool as a :class:`flue.sandbox.channel.Helper`, with an empty
environment. It imports nothing from Flue but the channel helpers and the
output buffer (no plugins, no server code).
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections import OrderedDict
from typing import Any

import bashkit

from flue.sandbox.channel import die_with_parent, helper_args
from flue.sandbox.frames import FrameError, FrameParser, send_frame
from flue.sandbox.output import TailBuffer

MAX_REPLICAS = 256  # least recently used ones (with no command running) are dropped beyond this


class UnknownReplica(Exception):
    pass


class Replica:
    def __init__(self, snapshot: bytes | None, fresh_cwd: str = "/") -> None:
        """From the owner's snapshot, or (None) a fresh filesystem holding only ``fresh_cwd``."""
        if snapshot is None:
            self.holder = bashkit.Bash()
            self.holder.fs().mkdir(fresh_cwd, recursive=True)
        else:
            self.holder = bashkit.Bash.from_snapshot(snapshot)  # owns the filesystem; runs no command
        self.fs = self.holder.fs()
        commit = self.holder.commit(exclude_functions=True)
        self.store: dict[str, bytes] = dict(commit.objects)
        self.last = commit.id  # what the owner has, as a commit
        self.running: dict[int, Any] = {}  # request id -> the shell running it

    def rebase(self) -> None:
        """The owner already has the current state (it sent the changes): make it the base."""
        commit = self.holder.commit(have=list(self.store), exclude_functions=True)
        self.store.update(commit.objects)
        self._advance(commit.id)

    def changes(self) -> tuple[dict[str, Any] | None, list[bytes]]:
        """What changed since the last report: ``{"rm": [paths], "put": [[path, kind, mode, x]]}``,
        ``kind`` f (x: blob index), d, or l (x: link target); None when nothing did."""
        commit = self.holder.commit(have=list(self.store), exclude_functions=True)
        if commit.id == self.last:
            return None, []
        self.store.update(commit.objects)
        diff = bashkit.SnapshotGraph.diff(self.last, commit.id, self.store)
        self._advance(commit.id)
        if diff.is_empty():
            return None, []
        blobs: list[bytes] = []
        put: list[list[Any]] = []
        removed = list(diff.files_removed)
        for path in [*diff.files_added, *diff.files_modified]:
            # Read now, not at commit time: a command still running may have moved on. The
            # next report compares against this commit, so anything newer is sent again.
            try:
                target = self.fs.read_link(path)
            except Exception:
                target = None
            try:
                info = self.fs.stat(path)
            except Exception:
                if target is None:
                    continue  # gone again; the next report says so
                info = {"mode": 0o777}
            mode = int(info.get("mode") or 0)
            if target is not None:
                put.append([path, "l", mode, target])
            elif info.get("file_type") == "directory":
                put.append([path, "d", mode, None])
            else:
                try:
                    data = bytes(self.fs.read_file(path))
                except Exception:
                    continue
                put.append([path, "f", mode, len(blobs)])
                blobs.append(data)
        return {"rm": removed, "put": put}, blobs

    def _advance(self, commit_id: str) -> None:
        self.last = commit_id
        if len(self.store) > 64:
            # keep only what the base commit reaches (the next diff needs its trees)
            keep = set(bashkit.SnapshotGraph.reachable(commit_id, self.store))
            if len(keep) < len(self.store):
                self.store = {k: v for k, v in self.store.items() if k in keep}

    def apply(self, ops: list[list[Any]], blobs: list[bytes]) -> None:
        """The owner's own file operations: ``["w", path, blob]``, ``["m", path, recursive]``,
        ``["r", path, recursive]``."""
        for op in ops:
            kind, path = op[0], op[1]
            if kind == "w":
                parent = os.path.dirname(path)
                if parent and not self.fs.exists(parent):
                    self.fs.mkdir(parent, recursive=True)
                self.fs.write_file(path, blobs[op[2]])
            elif kind == "m":
                if not (op[2] and self.fs.exists(path)):
                    self.fs.mkdir(path, recursive=bool(op[2]))
            elif kind == "r":
                if self.fs.exists(path) or is_link(self.fs, path):
                    self.fs.remove(path, recursive=bool(op[2]))


def is_link(fs: Any, path: str) -> bool:
    """Whether ``path`` is a symlink on a bashkit filesystem (``stat`` follows links)."""
    try:
        fs.read_link(path)
        return True
    except Exception:
        return False


class Worker:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.replicas: OrderedDict[str, Replica] = OrderedDict()
        self.tasks: set[asyncio.Task[None]] = set()

    def reply(self, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
        send_frame(self.sock, header, blobs)

    def replica(self, rid: str) -> Replica:
        rep = self.replicas.get(rid)
        if rep is None:
            raise UnknownReplica(rid)
        self.replicas.move_to_end(rid)
        return rep

    def dispatch(self, header: dict[str, Any], blobs: list[bytes]) -> None:
        op, rid = header.get("op"), header.get("id")
        try:
            if op == "exec":
                task = asyncio.get_running_loop().create_task(self.exec(header, blobs))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
                return
            if op == "cancel":
                for rep in self.replicas.values():
                    shell = rep.running.get(header["target"])
                    if shell is not None:
                        shell.cancel()
                return
            if op == "drop":
                for name in header["rids"]:
                    self.replicas.pop(name, None)
                return
            if op == "open":
                fresh = header.get("fresh")
                self.replicas[header["rid"]] = Replica(None, fresh) if fresh else Replica(blobs[0])
                self._evict()
                self.reply({"id": rid, "ok": True})
                return
            rep = self.replica(header["rid"])
            if op == "apply":
                rep.apply(header["ops"], blobs)
            elif op != "sync":
                raise ValueError(f"unknown op {op!r}")
            changes, out = rep.changes()
            self.reply({"id": rid, "ok": True, "changes": changes}, out)
        except Exception as exc:
            self.fail(rid, exc)

    def fail(self, rid: Any, exc: Exception) -> None:
        kind = "unknown_replica" if isinstance(exc, UnknownReplica) else "error"
        self.reply({"id": rid, "ok": False, "kind": kind, "message": str(exc) or type(exc).__name__})

    async def exec(self, header: dict[str, Any], blobs: list[bytes]) -> None:
        rid = header["id"]
        try:
            rep = self.replica(header["rid"])
            if header.get("ops"):
                try:
                    rep.apply(header["ops"], blobs)
                    rep.rebase()
                except Exception:
                    # it no longer matches the owner's files: forget it, the owner opens it again
                    self.replicas.pop(header["rid"], None)
                    raise UnknownReplica(header["rid"]) from None
            kwargs: dict[str, Any] = {
                "cwd": header["cwd"],
                "env": header["env"],
                "timeout_seconds": header["timeout"],
                "profile": bashkit.ExecutionProfile.Interactive,
                "network": header.get("network"),
                "python": bool(header.get("python")),
                "sqlite": bool(header.get("sqlite")),
            }
            if header.get("max_loop_iterations"):
                kwargs["max_loop_iterations"] = int(header["max_loop_iterations"])
            shell = bashkit.Bash(**kwargs)
            shell.mount("/", rep.fs)
        except Exception as exc:
            self.fail(rid, exc)
            return
        out, err = TailBuffer(), TailBuffer()
        rep.running[rid] = shell
        try:
            result = await shell.execute(header["command"], stdout=out.awrite, stderr=err.awrite)
            code, error, message = result.exit_code, result.error or "", result.stderr or ""
        except Exception as exc:  # bashkit raised instead of returning a result
            code, error, message = 1, "", f"{type(exc).__name__}: {exc}"
        finally:
            rep.running.pop(rid, None)
        result_header = {"id": rid, "ok": True, "exit_code": code, "timed_out": "execution timeout" in error,
                         "message": message, "files_at": 2}
        output = [out.text().encode(), err.text().encode()]
        try:
            changes, files = rep.changes()
        except Exception:
            # no report of the changes: send the whole filesystem instead (the owner adopts it)
            self.replicas.pop(header["rid"], None)
            self.reply({**result_header, "snapshot": 2}, [*output, bytes(rep.holder.snapshot())])
            return
        self.reply({**result_header, "changes": changes}, [*output, *files])

    def _evict(self) -> None:
        while len(self.replicas) > MAX_REPLICAS:
            for name, rep in self.replicas.items():
                if not rep.running:
                    del self.replicas[name]
                    break
            else:
                return


def main() -> None:
    sock, parent = helper_args()
    die_with_parent(parent)
    # stdout is not the channel: keep stray prints away from it anyway
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(sock)
    parser = FrameParser()

    def readable() -> None:
        data = sock.recv(1 << 20)  # readable: this does not block
        if not data:  # the server closed its end (or died): stop
            loop.stop()
            return
        try:
            frames = parser.feed(data)
        except FrameError:  # not our server talking: stop
            loop.stop()
            return
        for header, blobs in frames:
            worker.dispatch(header, blobs)

    loop.add_reader(sock.fileno(), readable)
    try:
        loop.run_forever()
    finally:
        os._exit(0)  # a wedged bashkit thread must not keep the process alive
