"""Giving memory back after large requests.

A 10 MiB prompt or payload is parsed, validated, stored and sent to the model:
several short-lived copies of it, freed once the work is done. CPython hands
large blocks to the C allocator, and glibc's ``malloc`` keeps freed heap memory
(in every thread's arena) for reuse instead of returning it, so the RSS of a
server that took a burst of large requests stays near its peak. After a
request whose body is at least :data:`LARGE_BODY` bytes, :class:`MemoryTrimmer`
calls glibc's ``malloc_trim(0)`` (in a worker thread, every
:data:`TRIM_EVERY_S` seconds for :data:`TRIM_FOR_S` seconds, so the admitted
work's own copies are returned once it finishes too). On other C libraries it
does nothing. ``benchmarks/rss_after_burst.py`` measures the effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger("flue.server")

LARGE_BODY = 1024 * 1024
TRIM_EVERY_S = 5.0
TRIM_FOR_S = 60.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


class MemoryTrimmer:
    """Trims the C heap for a while after large requests (see the module docstring)."""

    def __init__(self) -> None:
        self._until = 0.0
        self._task: asyncio.Task[None] | None = None

    def note(self, body_size: int) -> None:
        if _TRIM is None or body_size < LARGE_BODY:
            return
        loop = asyncio.get_running_loop()
        self._until = loop.time() + TRIM_FOR_S
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._loop(), name="flue-memory-trim")

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < self._until:
            await asyncio.sleep(TRIM_EVERY_S)
            try:
                await asyncio.to_thread(_TRIM, 0)  # type: ignore[arg-type]  # _TRIM is set: checked in note()
            except Exception as exc:  # never worth failing over
                log.debug("malloc_trim failed: %r", exc)
                return

    async def close(self, _app: web.Application | None = None) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def trim_middleware(trimmer: MemoryTrimmer) -> Any:
    """Middleware noting each request's body size for ``trimmer`` once it has been answered."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        finally:
            trimmer.note(request.content_length or 0)

    return middleware
