"""``harness.fs`` / ``session.fs``: out-of-band access to the sandbox filesystem.

Nothing done through ``fs`` appears in a transcript; use it for plumbing
(staging inputs, collecting artifacts). Relative paths resolve against the
session's working directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable

from flue.sandbox.base import FileStat, SandboxEnv


class FlueFs:
    def __init__(self, env: Callable[[], SandboxEnv], cwd: str):
        self._env = env  # raises SandboxUnavailableError when the harness has no sandbox
        self.cwd = cwd

    def _path(self, path: str) -> str:
        return path if posixpath.isabs(path) else posixpath.normpath(posixpath.join(self.cwd, path))

    async def read_file(self, path: str) -> str:
        return await self._env().read_file(self._path(path))

    async def read_file_bytes(self, path: str) -> bytes:
        return await self._env().read_file_bytes(self._path(path))

    async def write_file(self, path: str, content: str | bytes) -> None:
        await self._env().write_file(self._path(path), content)

    async def stat(self, path: str) -> FileStat:
        return await self._env().stat(self._path(path))

    async def readdir(self, path: str = ".") -> list[str]:
        return await self._env().readdir(self._path(path))

    async def exists(self, path: str) -> bool:
        return await self._env().exists(self._path(path))

    async def mkdir(self, path: str, *, recursive: bool = False) -> None:
        await self._env().mkdir(self._path(path), recursive=recursive)

    async def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None:
        await self._env().rm(self._path(path), recursive=recursive, force=force)
