"""The built-in sandbox kinds, registered through the public ``flue_sandboxes`` hook.

- ``virtual`` (the default): bashkit over an in-memory filesystem, see :mod:`flue.sandbox.virtual`
- ``local``: the host filesystem and subprocesses, see :mod:`flue.sandbox.local`

Each maker takes the agent's sandbox options (``sandbox: {kind: ..., <options>}``
minus ``kind``), validates them with pydantic (raising
``flue.sandbox.options.SandboxOptionsError`` that lists every problem) and
returns a factory. Makers also accept an optional ``source_root=`` keyword: the
project's source root, against which a relative ``workspace:`` folder resolves.

This module is imported by ``flue info``: the sandbox modules (and bashkit) are
imported only when a maker is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flue.hookspecs import hookimpl


def make_virtual_factory(options: dict[str, Any] | None = None, *, source_root: str | Path | None = None) -> Any:
    from flue.sandbox.virtual import make_virtual_factory as make

    return make(options, source_root=source_root)


def make_local_factory(options: dict[str, Any] | None = None, *, source_root: str | Path | None = None) -> Any:
    from flue.sandbox.local import make_local_factory as make

    return make(options)


@hookimpl
def flue_sandboxes() -> dict[str, Any]:
    return {"virtual": make_virtual_factory, "local": make_local_factory}
