"""Path helpers shared by the sandboxes and the built-in tools.

Sandbox paths are POSIX paths. A relative path is relative to a working
directory; ``..`` is folded so ``/workspace/../etc`` is ``/etc`` (the virtual
sandbox has nothing on the host to escape to, and the local sandbox is the host).
"""

from __future__ import annotations

import posixpath


def resolve(cwd: str, path: str) -> str:
    """Absolute, normalized form of ``path`` seen from ``cwd``."""
    if not path:
        raise ValueError("path must not be empty")
    joined = path if path.startswith("/") else posixpath.join(cwd or "/", path)
    # normpath keeps a leading '//' (POSIX allows it to mean something else); we never want that.
    out = posixpath.normpath(joined)
    return "/" + out.lstrip("/")


def relative_to(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (both absolute), or None when it is outside."""
    root = root.rstrip("/") or "/"
    if root == "/":
        return path.lstrip("/")
    if path == root:
        return ""
    if path.startswith(root + "/"):
        return path[len(root) + 1 :]
    return None
