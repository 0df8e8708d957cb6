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
        self._shown: set[str] = set()  # error texts already printed: a failure is told once

    def shown(self, err: Any) -> bool:
        """Whether this error's text was already printed (the same failure reaches the operation,
        the run and the submission)."""
        return _error(err) in self._shown

    def _once(self, err: Any) -> str:
        text = _error(err)
        if text in self._shown:
            return "(the error above)"
        self._shown.add(text)
        return text

    def _line(self, text: str) -> None:
        if self._mid_line:
            self.out.write("\n")
            self._mid_line = False
        self.out.write(text + "\n")
        self.out.flush()

    def subscriber(self, accept: Any = None) -> Any:
        """A sink subscriber printing typed events (``accept(event)`` filters); it declines
        ``turn_request``, which it never prints, so that event is not built for it."""
        from flue.events import STREAM_EXCLUDED

        def print_event(event: Any) -> None:
            if accept is None or accept(event):
                self(event.wire())

        print_event.skip_types = STREAM_EXCLUDED  # type: ignore[attr-defined]
        return print_event

    def __call__(self, event: dict[str, Any]) -> None:
        t = event.get("type")
        if t == "text_delta":
            if self.show_text:
                text = event.get("text", "")
                self.out.write(text)
                self.out.flush()
                self._mid_line = not text.endswith("\n")
            return
        line = self.format(event)
        if line:
            self._line(line)

    def format(self, e: dict[str, Any]) -> str | None:
        t = e.get("type")
        if t == "run_start":
            return f"▶ run {e.get('runId')} ({e.get('workflowName')})"
        if t == "run_resume":
            return f"↻ run {e.get('runId')} resumed after an interruption"
        if t == "run_end":
            secs = (e.get("durationMs") or 0) / 1000
            if e.get("isError"):
                return f"✘ run errored after {secs:.2f}s: {self._once(e.get('error'))}"
            return f"✔ run completed in {secs:.2f}s"
        if t == "operation_start":
            where = "/".join(x for x in (e.get("harness"), e.get("session")) if x)
            return f"● {e.get('operationKind')} [{where}]"
        if t == "operation" and e.get("isError"):
            return f"  ✘ {e.get('operationKind')} failed: {self._once(e.get('error'))}"
        if t == "tool_start":
            return f"  → {e.get('toolName')} {_short(e.get('args'))}"
        if t == "tool":
            mark = "✘" if e.get("isError") else "←"
            return f"  {mark} {e.get('toolName')}: {_short(_tool_text(e.get('result')), 200)}"
        if t == "task_start":
            return f"  ⇢ task ({e.get('agent') or 'default'}): {_short(e.get('prompt'), 100)}"
        if t == "log":
            attrs = " ".join(f"{k}={_short(v, 60)}" for k, v in (e.get("attributes") or {}).items())
            return f"  [{e.get('level')}] {e.get('message')}" + (f" {attrs}" if attrs else "")
        if t == "submission_settled":
            failed = e.get("outcome") == "failed"
            return f"  ■ submission {e.get('submissionId')} {e.get('outcome')}" + (
                f": {self._once(e.get('error'))}" if failed else "")
        if t == "compaction":
            return f"  ⟲ compacted {e.get('messagesBefore')} messages to {e.get('messagesAfter')}"
        return None


def _error(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err or "")
    return f"{err.get('type') or err.get('name')}: {err.get('message')}"


def _tool_text(result: Any) -> Any:
    """The text of a tool event's ``result`` (``{content: [{type: "text", text}]}``)."""
    if isinstance(result, dict) and isinstance(result.get("content"), list):
        return "".join(str(b.get("text") or "") for b in result["content"] if isinstance(b, dict))
    return result
