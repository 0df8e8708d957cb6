"""Server-Sent Events framing on a plain aiohttp ``StreamResponse``.

Only what Flue's streams need: ``event:``/``data:`` frames whose data is split
on every SSE line terminator (CRLF, CR, LF), so a payload can never end a frame
or smuggle in a frame of its own; comment frames for keep-alives; the response
headers that stop proxies from buffering. Lines end with LF, which every SSE
parser accepts and which clients splitting frames on ``"\\n\\n"`` rely on.
"""

from __future__ import annotations

import re

_LINE_BREAK = re.compile(r"\r\n|\r|\n")

#: Headers every SSE response needs: the MIME type, no caching, no proxy buffering.
SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def _field(name: str, value: str) -> str:
    if _LINE_BREAK.search(value):
        raise ValueError(f"SSE {name} must not contain a line break: {value!r}")
    return value


def frame(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE frame. ``data`` may contain any line breaks; each line gets its own ``data:`` field.

    ``data:`` is written without the optional space so that a payload starting
    with a space survives the parser's single-space strip intact.
    """
    out: list[str] = []
    if event is not None:
        out.append(f"event: {_field('event', event)}\n")
    if id is not None:
        out.append(f"id: {_field('id', id)}\n")
    out.extend(f"data:{line}\n" for line in _LINE_BREAK.split(data))
    out.append("\n")
    return "".join(out).encode("utf-8")


def comment(text: str = "") -> bytes:
    """A comment frame (ignored by parsers); used as a keep-alive."""
    return f":{_field('comment', text)}\n\n".encode()
