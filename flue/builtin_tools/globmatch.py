"""Glob patterns for the ``glob`` and ``grep`` tools, as regular expressions.

``*`` and ``?`` stay inside one path segment, ``**`` spans any number of
directories (including none), ``[abc]``/``[!abc]`` are character classes and
``{a,b}`` alternatives. ``*`` also matches names starting with a dot, so
``**/*.md`` finds ``.github/x.md`` too.
"""

from __future__ import annotations

import re

MAX_BRACE_EXPANSIONS = 256


def expand_braces(pattern: str) -> list[str]:
    """``a{b,c}d`` -> ``[abd, acd]``; nested braces work; unbalanced braces are literal."""
    out: list[str] = []
    todo = [pattern]
    while todo:
        p = todo.pop()
        start = _brace_start(p)
        if start is None:
            out.append(p)
        else:
            end, parts = _brace_parts(p, start)
            todo.extend(p[:start] + part + p[end + 1 :] for part in reversed(parts))
        if len(out) + len(todo) > MAX_BRACE_EXPANSIONS:
            raise ValueError(f"pattern expands to more than {MAX_BRACE_EXPANSIONS} alternatives")
    return out


def _brace_start(p: str) -> int | None:
    for i, ch in enumerate(p):
        if ch == "{":
            depth = 0
            for j in range(i, len(p)):
                depth += {"{": 1, "}": -1}.get(p[j], 0)
                if depth == 0:
                    return i if "," in p[i:j] else None
            return None
    return None


def _brace_parts(p: str, start: int) -> tuple[int, list[str]]:
    depth, parts, cur = 0, [], start + 1
    for j in range(start, len(p)):
        ch = p[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                parts.append(p[cur:j])
                return j, parts
        elif ch == "," and depth == 1:
            parts.append(p[cur:j])
            cur = j + 1
    raise AssertionError("unbalanced braces")  # _brace_start checked balance


def _segment(seg: str) -> str:
    out, i = [], 0
    while i < len(seg):
        ch = seg[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            k = i + 1
            if seg[k : k + 1] in ("!", "^"):
                k += 1
            if seg[k : k + 1] == "]":  # a leading ']' is a literal member of the class
                k += 1
            j = seg.find("]", k)
            if j == -1:
                out.append(re.escape(ch))
            else:
                body = seg[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _translate_one(pattern: str) -> str:
    segs = [s for s in pattern.split("/") if s not in ("", ".")]
    parts: list[str] = []
    for k, seg in enumerate(segs):
        last = k == len(segs) - 1
        if seg == "**":
            parts.append(".*" if last else "(?:[^/]*/)*")
        else:
            parts.append(_segment(seg) + ("" if last else "/"))
    return "".join(parts)


def compile_glob(pattern: str) -> re.Pattern[str]:
    """A regex matching relative posix paths (no leading '/') against ``pattern``."""
    alts = [_translate_one(p) for p in expand_braces(pattern)]
    return re.compile("^(?:" + "|".join(alts) + ")$", re.DOTALL)


def is_magic(segment: str) -> bool:
    return any(ch in segment for ch in "*?[{")


def split_root(pattern: str) -> tuple[str, str]:
    """Split an absolute pattern into its literal directory prefix and the rest."""
    segs = pattern.split("/")
    literal: list[str] = []
    for seg in segs[1:-1]:
        if is_magic(seg):
            break
        literal.append(seg)
    root = "/" + "/".join(literal)
    rest = "/".join(segs[1 + len(literal) :])
    return root, rest
