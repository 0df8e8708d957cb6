"""Readable event lines for a terminal (``flue run``, ``flue connect``, ``flue logs``)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class EventPrinter:
    """Renders wire-format events (dicts) as they arrive. Text deltas stream inline."""

    def __init__(self, out: TextIO | None = None, *, show_text: bool = True):
        self.out = out or sys.stderr
        self.show_text = show_text
        self._mid_line = False

    def _line(self, text: str) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def __call__(self, event: dict[str, Any]) -> None:
        t = event.get("type")
        if t == "text_delta":
            if self.show_text:
                self.out.write(event.get("delta", ""))
                self.out.flush()
                self._mid_line = not event.get("delta", "").endswith("\n")
            return
        if t == "thinking_delta":
            return
        line = self.format(event)
        if line:
            self._line(line)

    def format(self, e: dict[str, Any]) -> str | None:
        t = e.get("type")
        if t == "run_start":
            return f"▶ run {e.get('runId')} ({e.get('workflow')})"
        if t == "run_end":
            secs = (e.get("durationMs") or 0) / 1000
            if e.get("isError"):
                err = e.get("error") or {}
                return f"✘ run errored after {secs:.2f}s: {err.get('type')}: {err.get('message')}"
            return f"✔ run completed in {secs:.2f}s"
        if t == "operation_start":
            where = "/".join(x for x in (e.get("harness"), e.get("session")) if x)
            return f"● {e.get('kind')} [{where}]"
        if t == "operation_end" and e.get("isError"):
            err = e.get("error") or {}
            return f"  ✘ {e.get('kind')} failed: {err.get('message')}"
        if t == "tool_call":
            return f"  → {e.get('name')} {_short(e.get('arguments'))}"
        if t == "tool_result":
            mark = "✘" if e.get("isError") else "←"
            return f"  {mark} {e.get('name')}: {_short(e.get('output'), 200)}"
        if t == "task_start":
            return f"  ⇢ task ({e.get('profile') or 'default'}): {_short(e.get('prompt'), 100)}"
        if t == "log":
            attrs = " ".join(f"{k}={_short(v, 60)}" for k, v in (e.get("attributes") or {}).items())
            return f"  [{e.get('level')}] {e.get('message')}" + (f" {attrs}" if attrs else "")
        if t == "error":
            err = e.get("error") or {}
            return f"  ✘ {err.get('type')}: {err.get('message')}"
        if t == "submission_settled":
            return f"  ■ submission {e.get('submissionId')} {e.get('status')}"
        if t == "compaction_end":
            return f"  ⟲ compacted context to {e.get('tokensAfter')} tokens"
        return None
