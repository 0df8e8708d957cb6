"""Bounded capture of command output.

A command can print far more than anyone wants in memory (``yes``, ``cat`` of a
big file). Both built-in sandboxes stream stdout and stderr into a
:class:`TailBuffer`, which keeps the *last* ``limit`` bytes: for a failing
command the end of the output is where the error is. What was dropped is
reported in a one-line marker at the top of the text.
"""

from __future__ import annotations

# Per stream, per command. Generous for harness.shell users who want whole
# outputs; the bash tool cuts far tighter for the model (see flue.builtin_tools).
OUTPUT_LIMIT_BYTES = 8 * 1024 * 1024


class TailBuffer:
    def __init__(self, limit: int = OUTPUT_LIMIT_BYTES) -> None:
        self.limit = limit
        self.dropped = 0
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        # Trim only once we hold twice the limit, so trimming stays amortized O(n).
        if len(self._data) > 2 * self.limit:
            cut = len(self._data) - self.limit
            del self._data[:cut]
            self.dropped += cut

    async def awrite(self, chunk: bytes) -> None:
        """An async sink (the shape bashkit's ``execute(stdout=...)`` wants)."""
        self.add(chunk)

    def text(self) -> str:
        data = bytes(self._data)
        dropped = self.dropped
        if len(data) > self.limit:
            dropped += len(data) - self.limit
            data = data[-self.limit :]
        body = data.decode("utf-8", errors="replace")
        if dropped:
            return f"[flue: {dropped} bytes of earlier output dropped]\n{body}"
        return body


def timeout_message(seconds: float) -> str:
    return f"flue: command timed out after {seconds:g}s and was stopped (exit code 124)\n"


def join_stderr(stderr: str, extra: str) -> str:
    if not extra:
        return stderr
    if stderr and not stderr.endswith("\n"):
        stderr += "\n"
    return stderr + extra
