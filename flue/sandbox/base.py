"""The sandbox contract (public).

A :class:`SandboxFactory` creates one :class:`SandboxEnv` per ``init()``; that
env is shared by the harness's sessions and tasks. Plugins register factories
by kind through the ``flue_sandboxes`` hook; agents pick one with
``sandbox: <kind>`` or ``sandbox: {kind: <kind>, ...options}``.

Connectors adapt someone else's sandbox: they never delete, terminate or kill
the provider's sandbox. Flue does not own its lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

TIMEOUT_EXIT_CODE = 124


@dataclass
class ExecResult:
    stdout: str
    stderr: str
    exit_code: int

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


@dataclass
class FileStat:
    is_file: bool
    is_directory: bool
    is_symbolic_link: bool = False
    size: int = 0
    mtime: datetime = field(default_factory=datetime.now)


@runtime_checkable
class SandboxEnv(Protocol):
    """One session environment. Paths are absolute or relative to ``cwd``."""

    cwd: str

    async def exec(
        self, command: str, *, cwd: str | None = None, env: dict[str, str] | None = None, timeout: float | None = None
    ) -> ExecResult:
        """Run a shell command. On timeout: exit code 124 and a stderr saying so."""
        ...

    async def read_file(self, path: str) -> str: ...
    async def read_file_bytes(self, path: str) -> bytes: ...
    async def write_file(self, path: str, content: str | bytes) -> None: ...
    async def stat(self, path: str) -> FileStat: ...
    async def readdir(self, path: str) -> list[str]: ...
    async def exists(self, path: str) -> bool: ...
    async def mkdir(self, path: str, *, recursive: bool = False) -> None: ...
    async def rm(self, path: str, *, recursive: bool = False, force: bool = False) -> None: ...


@dataclass
class SandboxRequest:
    """What a factory is told when asked for an env."""

    id: str  # the harness scope, e.g. "agents/support/customer-1/default"
    cwd: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # seed files, relative to cwd
    snapshot: bytes | None = None  # state to restore, when the factory supports it


class SandboxFactory(Protocol):
    async def create_session_env(self, request: SandboxRequest) -> SandboxEnv: ...
