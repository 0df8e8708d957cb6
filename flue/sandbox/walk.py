"""Listing the files under a directory of any sandbox, for ``grep`` and ``glob``.

An env may offer a fast native listing by implementing::

    async def walk_files(self, root: str, *, skip_dirs: frozenset[str], limit: int) -> tuple[list[str], bool]

returning sorted absolute paths of regular files and whether ``limit`` cut the
listing short. Both built-in sandboxes do. Any other ``SandboxEnv`` is walked
with ``readdir`` and ``stat`` (one call per entry: fine for small trees, slow
on a remote sandbox with a big one; implement ``walk_files`` there).
"""

from __future__ import annotations

import posixpath
from typing import Any

from flue.sandbox.base import SandboxEnv

# Directories nobody wants searched: VCS internals, dependency and cache trees,
# and the kernel's pseudo filesystems.
SKIP_DIRS: frozenset[str] = frozenset(
    {".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox"}
)
SKIP_ROOTS: frozenset[str] = frozenset({"/proc", "/sys", "/dev"})
MAX_WALK_FILES = 20_000


async def walk_files(env: SandboxEnv | Any, root: str, *, limit: int = MAX_WALK_FILES) -> tuple[list[str], bool]:
    """Sorted absolute paths of the regular files under ``root`` (or ``[root]`` for a file)."""
    st = await env.stat(root)
    if not st.is_directory:
        return [root], False
    native = getattr(env, "walk_files", None)
    if native is not None:
        return await native(root, skip_dirs=SKIP_DIRS, limit=limit)
    files: list[str] = []
    stack = [root]
    while stack:
        d = stack.pop()
        for name in sorted(await env.readdir(d), reverse=True):
            p = posixpath.join(d, name)
            try:
                s = await env.stat(p)
            except OSError:
                continue  # vanished or unreadable while walking
            if s.is_directory:
                if name not in SKIP_DIRS and p not in SKIP_ROOTS and not s.is_symbolic_link:
                    stack.append(p)
            elif s.is_file:
                files.append(p)
                if len(files) >= limit:
                    return sorted(files), True
    return sorted(files), False
