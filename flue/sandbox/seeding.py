"""Seeding a sandbox with project files at ``init()``.

Two sources, merged (``files:`` wins on the same path):

- a host folder (the virtual sandbox's ``workspace:`` option), copied
  recursively, dotfiles included so ``AGENTS.md`` and ``.agents/skills/`` can
  be seeded too;
- the agent's frontmatter ``files: {relative/path: text}``.

Paths are relative to the sandbox cwd. A seed never overwrites a file that is
already there: on a fresh virtual filesystem everything is written, on a
restored snapshot only what is missing (the agent's own edits survive a
restart, newly added project files still appear), and the local sandbox never
clobbers host files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from flue.sandbox.paths import resolve

MAX_SEED_BYTES = 50 * 1024 * 1024  # the virtual filesystem holds 100 MB in total


class _Writable(Protocol):
    cwd: str

    async def exists(self, path: str) -> bool: ...
    async def write_file(self, path: str, content: str | bytes) -> None: ...


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every regular file under ``folder`` as {posix relative path: bytes}. Blocking: run in a thread."""
    if not folder.is_dir():
        raise FileNotFoundError(f"sandbox workspace folder {folder} does not exist or is not a directory")
    out: dict[str, bytes] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_SEED_BYTES:
                raise ValueError(
                    f"sandbox workspace folder {folder} holds more than {MAX_SEED_BYTES // (1024 * 1024)} MB; "
                    "seed less, or use the local sandbox"
                )
            out[path.relative_to(folder).as_posix()] = data
    return out


async def apply_seeds(env: _Writable, seeds: dict[str, str | bytes]) -> list[str]:
    """Write seeds under ``env.cwd`` unless the file exists; return the paths written."""
    written = []
    for rel, content in seeds.items():
        path = resolve(env.cwd, rel)
        if await env.exists(path):
            continue
        await env.write_file(path, content)
        written.append(path)
    return written
