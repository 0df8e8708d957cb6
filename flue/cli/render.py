"""Readable event lines for a terminal (``flue run``, ``flue connect``, ``flue logs``).

:class:`EventPrinter` renders wire-format events as they arrive: one line per
run, operation, tool call, log or compaction, text deltas streamed inline, and
the output of shell steps and of the ``bash`` tool as a short indented block.
On a terminal the lines are coloured (rich) and, with ``spinner=True``, a
spinner with the elapsed time shows what is being waited for: the model
(between ``turn_start`` and its first text), a tool (``tool_start`` to
``tool``) or a shell step (``operation_start`` to ``operation``). In a pipe the
same lines are plain text: no colour, no spinner, no control characters
(rich decides by ``isatty``, and honours ``NO_COLOR`` and ``FORCE_COLOR``).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, TextIO

#: How many lines of a shell step's or the bash tool's output are shown (the rest is counted).
OUTPUT_LINES = 12
SPINNER_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
SPINNER_INTERVAL_S = 0.1
CLEAR_LINE = "\r\x1b[2K"


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Spinner:
    """A one-line spinner on a terminal, redrawn by a daemon thread (the event loop may be busy).

    Every write to the terminal goes through :meth:`write` under one lock, which first clears
    the spinner's line, so output and spinner never interleave on a line."""

    def __init__(self, out: TextIO, *, color: bool):
        self.out = out
        self.color = color
        self.lock = threading.RLock()
        self.label: str | None = None
        self.since = 0.0
        self.drawn = False
        self._frame = 0
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def start(self, label: str) -> None:
        with self.lock:
            if self.label != label:
                self.label, self.since = label, time.monotonic()
            self._draw()
        if self._thread is None:
            self._thread = threading.Thread(target=self._spin, name="flue-spinner", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self.lock:
            self.label = None
            self.clear()

    def clear(self) -> None:
        with self.lock:
            if self.drawn:
                self.out.write(CLEAR_LINE)
                self.out.flush()
                self.drawn = False

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout=1.0)

    def _draw(self) -> None:
        if self.label is None:
            return
        frame = SPINNER_FRAMES[self._frame % len(SPINNER_FRAMES)]
        self._frame += 1
        elapsed = f"{time.monotonic() - self.since:.1f}s"
        if self.color:
            line = f"\x1b[36m{frame}\x1b[0m {self.label} \x1b[2m{elapsed}\x1b[0m"
        else:
            line = f"{frame} {self.label} {elapsed}"
        self.out.write(CLEAR_LINE + line)
        self.out.flush()
        self.drawn = True

    def _spin(self) -> None:
        while not self._closed:
            self._wake.wait(SPINNER_INTERVAL_S)
            with self.lock:
                if not self._closed:
                    self._draw()


class EventPrinter:
    """Renders wire-format events (dicts) as they arrive. Text deltas stream inline, to
    ``text_out`` (default: ``out``, stderr). ``spinner``: show one while waiting, on a terminal."""

    def __init__(self, out: TextIO | None = None, *, show_text: bool = True, text_out: TextIO | None = None,
                 spinner: bool = False):
        from rich.console import Console

        self.out = out or sys.stderr
        self.text_out = text_out or self.out
        self.show_text = show_text
        self.console = Console(file=self.out, highlight=False, markup=False, emoji=False, soft_wrap=True)
        self.terminal = self.console.is_terminal
        self.spinner = _Spinner(self.out, color=not self.console.no_color) if spinner and self.terminal else None
        self._mid_line = False
        self.written = 0  # characters of streamed text written so far (callers may reset it)
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

    # -- writing ----------------------------------------------------------------------

    def _lock(self) -> Any:
        return self.spinner.lock if self.spinner is not None else _NO_LOCK

    def _end_text_line(self) -> None:
        if self._mid_line:
            self.text_out.write("\n")
            self.text_out.flush()
            self._mid_line = False

    def _line(self, text: str, style: str | None = None) -> None:
        with self._lock():
            if self.spinner is not None:
                self.spinner.clear()
            self._end_text_line()
            self.console.print(text, style=style)

    def line(self, text: str, style: str | None = None) -> None:
        """Print a line of our own between the events (e.g. ``flue connect``'s "completed")."""
        if self.spinner is not None:
            self.spinner.stop()
        self._line(text, style)

    def text(self, text: str) -> None:
        with self._lock():
            if self.spinner is not None:
                self.spinner.stop()
            self.text_out.write(text)
            self.text_out.flush()
            self.written += len(text)
            if text:
                self._mid_line = not text.endswith("\n")

    def end_text(self) -> None:
        """End a streamed answer's line (so what follows starts on its own)."""
        with self._lock():
            self._end_text_line()

    def wait(self, label: str) -> None:
        if self.spinner is not None and not self._mid_line:
            self.spinner.start(label)

    def close(self) -> None:
        if self.spinner is not None:
            self.spinner.close()
        self.end_text()

    # -- events -----------------------------------------------------------------------

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
                self.text(event.get("text", ""))
            elif self.spinner is not None:
                self.spinner.stop()
            return
        if t == "message_end":
            self.end_text()
        line = self.format(event)
        if line:
            self._line(line, _style(event))
        if t == "tool" and event.get("toolName") == "bash":
            self._output(str(_tool_text(event.get("result")) or ""))
        if t == "operation" and event.get("operationKind") == "shell" and isinstance(event.get("result"), dict):
            result = event["result"]
            self._output(str(result.get("stdout") or "") + str(result.get("stderr") or ""))
        self._follow_wait(t, event)

    def _follow_wait(self, t: Any, e: dict[str, Any]) -> None:
        """Start or stop the spinner for what the event says is being waited for."""
        if self.spinner is None:
            return
        if t == "turn_start":
            self.wait("waiting for the model" if e.get("purpose", "agent") == "agent" else "compacting")
        elif t == "thinking_start":
            self.wait("thinking")
        elif t == "tool_start":
            self.wait(f"running {e.get('toolName')}")
        elif t == "task_start":
            self.wait(f"task ({e.get('agent') or 'default'})")
        elif t == "operation_start" and e.get("operationKind") == "shell":
            self.wait("running shell step")
        elif t in ("tool", "task"):
            self.wait("waiting for the model")  # the turn goes on with the results
        elif t in ("message_end", "turn", "operation", "idle", "run_end", "submission_settled", "agent_end"):
            self.spinner.stop()

    def _output(self, text: str) -> None:
        """A command's output as an indented block, its first :data:`OUTPUT_LINES` lines."""
        lines = text.rstrip("\n").splitlines()
        if not lines:
            return
        shown = lines[:OUTPUT_LINES]
        if len(lines) > OUTPUT_LINES:
            shown.append(f"… ({len(lines) - OUTPUT_LINES} more lines)")
        self._line("\n".join(f"    │ {x}" for x in shown), "dim")

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
            # a YAML shell step's harness is internal (__shell__): name only its session
            where = "/".join(x for x in (e.get("harness"), e.get("session")) if x and not x.startswith("__"))
            return f"● {e.get('operationKind')} [{where}]"
        if t == "operation" and e.get("isError"):
            return f"  ✘ {e.get('operationKind')} failed: {self._once(e.get('error'))}"
        if t == "tool_start":
            return f"  → {e.get('toolName')} {_short(e.get('args'))}"
        if t == "tool":
            mark = "✘" if e.get("isError") else "←"
            if e.get("toolName") == "bash" and not e.get("isError"):
                return f"  {mark} bash"  # its output follows as a block
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


class _NoLock:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_LOCK = _NoLock()


def _style(e: dict[str, Any]) -> str | None:
    """The colour of an event's line on a terminal."""
    t = e.get("type")
    if e.get("isError") or (t == "submission_settled" and e.get("outcome") == "failed"):
        return "red"
    if t == "log" and e.get("level") in ("warn", "warning", "error"):
        return "yellow"
    return {"run_start": "bold", "run_resume": "bold", "run_end": "green", "operation_start": "bold blue",
            "tool_start": "cyan", "tool": "dim cyan", "task_start": "magenta", "log": "dim",
            "submission_settled": "green", "compaction": "dim"}.get(str(t))


def _error(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err or "")
    return f"{err.get('type') or err.get('name')}: {err.get('message')}"


def _tool_text(result: Any) -> Any:
    """The text of a tool event's ``result`` (``{content: [{type: "text", text}]}``)."""
    if isinstance(result, dict) and isinstance(result.get("content"), list):
        return "".join(str(b.get("text") or "") for b in result["content"] if isinstance(b, dict))
    return result
