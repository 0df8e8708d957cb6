"""The frames the sandboxes exchange with their helper processes (:mod:`flue.sandbox.channel`).

A frame is a JSON header plus binary blobs (file contents, command output,
snapshots), so bytes never pass through JSON and nothing is unpickled: a
helper runs untrusted shell code, and what it sends back is only ever data::

    <u32 header length> <header: UTF-8 JSON, with "_b": [blob lengths]> <blob bytes ...>

Frames travel over a Unix socket pair. Senders block (each end reads all the
time, so a send always drains); file descriptors can ride along
(SCM_RIGHTS). Readers feed whatever bytes arrived to a :class:`FrameParser`.
Only the standard library here: helpers import this module at startup.
"""

from __future__ import annotations

import array
import json
import socket
import struct
from collections.abc import Sequence
from typing import Any

_LEN = struct.Struct("<I")
MAX_HEADER = 64 * 1024 * 1024


class FrameError(ValueError):
    """The other end sent something that is not a frame."""


def encode(header: dict[str, Any], blobs: list[bytes] | None = None) -> list[bytes]:
    """The frame as a list of buffers (written with one ``writev`` where possible)."""
    blobs = blobs or []
    head = json.dumps({**header, "_b": [len(b) for b in blobs]}, separators=(",", ":")).encode()
    return [_LEN.pack(len(head)), head, *blobs]


def send_frame(sock: socket.socket, header: dict[str, Any], blobs: list[bytes] | None = None, fds: Sequence[int] = ()) -> None:
    """Send a whole frame on a blocking socket (callers serialize sends per socket); ``fds``
    travel with its first bytes (SCM_RIGHTS), in order, for the receiver's :func:`recv_fds`."""
    parts = [memoryview(p) for p in encode(header, blobs) if p]
    ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
    while parts:
        n = sock.sendmsg(parts[:512], ancillary)
        ancillary = []
        while n:
            if n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            else:
                parts[0] = parts[0][n:]
                n = 0


def recv_fds(sock: socket.socket, size: int = 1 << 20, max_fds: int = 16) -> tuple[bytes, list[int]]:
    """Bytes (empty at end of stream) and any file descriptors that came with them."""
    data, ancillary, _flags, _addr = sock.recvmsg(size, socket.CMSG_SPACE(max_fds * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
            fds.extend(arr)
    return data, fds


class FrameParser:
    """Frames out of bytes as they arrive (for a non-blocking reader on an event loop)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[int, dict[str, Any], list[int]] | None = None  # (header end, header, lengths)

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], list[bytes]]]:
        self._buf += data
        frames = []
        while (frame := self._next()) is not None:
            frames.append(frame)
        return frames

    def _next(self) -> tuple[dict[str, Any], list[bytes]] | None:
        buf = self._buf
        if self._need is None:
            if len(buf) < _LEN.size:
                return None
            (size,) = _LEN.unpack_from(buf)
            if size > MAX_HEADER:
                raise FrameError(f"frame header of {size} bytes")
            end = _LEN.size + size
            if len(buf) < end:
                return None
            try:
                header = json.loads(bytes(buf[_LEN.size:end]))
                lengths = header.pop("_b")
            except (ValueError, KeyError, AttributeError) as exc:
                raise FrameError(f"bad frame header: {exc}") from None
            if not isinstance(lengths, list) or not all(isinstance(n, int) and n >= 0 for n in lengths):
                raise FrameError("bad blob lengths")
            self._need = (end, header, lengths)
        end, header, lengths = self._need
        if len(buf) < end + sum(lengths):
            return None
        blobs, at = [], end
        for n in lengths:
            blobs.append(bytes(buf[at:at + n]))
            at += n
        del buf[:at]
        self._need = None
        return header, blobs
