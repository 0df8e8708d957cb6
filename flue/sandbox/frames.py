"""The frames the virtual sandbox and its worker processes exchange over a pipe.

A frame is a JSON header plus binary blobs (file contents, command output,
snapshots), so bytes never pass through JSON and nothing is unpickled: a
worker runs untrusted shell code, and what it sends back is only ever data::

    <u32 header length> <header: UTF-8 JSON, with "_b": [blob lengths]> <blob bytes ...>

Writers block (each end reads all the time, so a write always drains);
readers feed whatever bytes arrived to a :class:`FrameParser`. Only the
standard library here: the worker imports this module at startup.
"""

from __future__ import annotations

import json
import os
import struct
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


def write_frame(fd: int, header: dict[str, Any], blobs: list[bytes] | None = None) -> None:
    """Write a whole frame to a blocking fd (callers serialize writes per fd)."""
    parts = [memoryview(p) for p in encode(header, blobs) if p]
    while parts:
        n = os.writev(fd, parts[:1024])
        while n:
            if n >= len(parts[0]):
                n -= len(parts[0])
                parts.pop(0)
            else:
                parts[0] = parts[0][n:]
                n = 0


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
