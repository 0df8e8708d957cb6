"""Sandboxes: the filesystem and shell an agent acts through.

- :mod:`flue.sandbox.base` — the public contract (``SandboxEnv``, ``SandboxFactory``,
  ``SandboxRequest``, ``ExecResult``, ``FileStat``, ``TIMEOUT_EXIT_CODE``)
- :mod:`flue.sandbox.virtual` — ``virtual``, the default: bashkit, in memory, rooted at ``/workspace``
- :mod:`flue.sandbox.local` — ``local``: the host, with an allow-listed environment
- :mod:`flue.sandbox.plugin` — registers both kinds through the ``flue_sandboxes`` hook
- helpers for sandbox authors: :mod:`~flue.sandbox.paths`, :mod:`~flue.sandbox.output`,
  :mod:`~flue.sandbox.options`, :mod:`~flue.sandbox.seeding`, :mod:`~flue.sandbox.walk`

Error conventions every built-in env follows (and connectors should): a
missing path raises ``FileNotFoundError``, reading a directory
``IsADirectoryError``, ``rm`` of a directory without ``recursive=True``
``IsADirectoryError``, ``mkdir`` of an existing path without ``recursive=True``
``FileExistsError``; ``write_file`` creates missing parent directories;
``readdir`` returns sorted names.
"""

from flue.sandbox.base import (
    TIMEOUT_EXIT_CODE,
    ExecResult,
    FileStat,
    SandboxEnv,
    SandboxFactory,
    SandboxRequest,
)

__all__ = ["TIMEOUT_EXIT_CODE", "ExecResult", "FileStat", "SandboxEnv", "SandboxFactory", "SandboxRequest"]
