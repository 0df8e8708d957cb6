"""Issue 13: what ``flue connect`` and ``flue run`` show while they wait, on a terminal and in a pipe.

Real subprocesses: a pseudo-terminal (``pty.openpty``) stands for a person's
terminal, pipes for a script. The model is the scripted OpenAI-compatible
server (loopback), slowed per chunk so streaming and the spinner are visible;
the example project's offline model covers the README path. Every subprocess
is bounded in time and killed by PID.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from flue.cli.render import SPINNER_FRAMES
from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]
REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
ANSWER = "Hello there, terminal friend."


def project(root: Path, model_url: str) -> Path:
    files = {
        "flue.yaml": f"model: scripted/chat\nproviders:\n  scripted: {{api: openai-completions, base_url: {model_url}, "
                     "api_key: test-key}\n",
        "agents/helper.md": "---\ndescription: runs commands\ntools: [bash]\n---\nBe brief.\n",
        "workflows/slow.yaml": textwrap.dedent("""\
            steps:
              - id: wait
                shell: "sleep 0.6; echo shell-said-hi"
            return: "{{ steps.wait.stdout | trim }}"
            """),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def script(server: ScriptedModelServer) -> None:
    server.add(calls(tool_call("bash", {"command": "echo tool-output-line"}), delay=0.3),
               reply(ANSWER, chunk_size=4, delay=0.15))


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FLUE_MODEL", "NO_COLOR", "FORCE_COLOR")}
    return {**env, "XDG_STATE_HOME": str(tmp_path / "state"), "TERM": "xterm-256color", "COLUMNS": "100"}


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is the pty, as in a shell (Ctrl+C is SIGINT)."""
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """A subprocess whose stdin, stdout and stderr are one pseudo-terminal; output read with timestamps."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]):
        self.main, child = os.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "flue", *args], cwd=cwd, env=env, stdin=child,
                                     stdout=child, stderr=child, preexec_fn=_own_terminal)
        os.close(child)
        self.chunks: list[tuple[float, bytes]] = []

    @property
    def text(self) -> str:
        return b"".join(c for _, c in self.chunks).decode("utf-8", errors="replace")

    def read_until(self, pattern: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, ANSI.sub("", self.text)):
            left = deadline - time.monotonic()
            assert left > 0, f"no {pattern!r} in {self.text!r}"
            ready, _, _ = select.select([self.main], [], [], min(left, 0.2))
            if ready:
                try:
                    chunk = os.read(self.main, 4096)
                except OSError:  # the terminal closed with the process
                    chunk = b""
                if not chunk:
                    assert re.search(pattern, ANSI.sub("", self.text)), f"ended without {pattern!r}: {self.text!r}"
                    return
                self.chunks.append((time.monotonic(), chunk))

    def type(self, data: bytes) -> None:
        os.write(self.main, data)

    def close(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
            os.close(self.main)


def in_terminal(args: list[str], cwd: Path, env: dict[str, str], steps) -> tuple[int, Terminal]:
    term = Terminal(args, cwd, env)
    try:
        steps(term)
    except BaseException:
        term.proc.kill()
        raise
    return term.close(), term


def streamed_in_pieces(term: Terminal, answer: str) -> bool:
    """Whether the answer reached the terminal over several reads (token by token), not at once."""
    seen = ""
    pieces = 0
    for _, chunk in term.chunks:
        seen += ANSI.sub("", chunk.decode("utf-8", errors="replace"))
        if answer[:4] in seen and answer not in seen:
            pieces += 1
    return pieces >= 2


@pytest.fixture
def slow_model():
    """The scripted model server, run on its own loop (the tests here drive blocking ptys)."""
    import threading

    loop = asyncio.new_event_loop()
    server = ScriptedModelServer()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.__aenter__())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(10)
    yield server
    asyncio.run_coroutine_threadsafe(server.__aexit__(None, None, None), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_connect_on_a_terminal_shows_a_spinner_tools_and_streamed_tokens(tmp_path: Path, slow_model) -> None:
    script(slow_model)
    root = project(tmp_path / "p", slow_model.url)

    def session(term: Terminal) -> None:
        term.read_until(r"helper> $")  # the prompt is labelled with the agent's name
        term.type(b"list it\r")
        term.read_until(r"completed in \d+\.\d\ds")
        term.read_until(r"helper> $")
        term.type(b"\x04")  # Ctrl+D
        term.read_until(r"\n$", timeout=10)

    code, term = in_terminal(["connect", "helper", "t1"], root, env_for(tmp_path), session)
    assert code == 0, term.text
    raw, plain = term.text, ANSI.sub("", term.text)
    assert "\x1b[" in raw  # colours on a terminal
    assert any(f in raw for f in SPINNER_FRAMES) and re.search(r"waiting for the model \d+\.\ds", plain)
    assert "running bash" in plain  # the spinner while the tool runs
    assert "→ bash {\"command\": \"echo tool-output-line\"}" in plain  # the tool call, as it happens
    assert "│ tool-output-line" in plain  # and its output
    assert streamed_in_pieces(term, ANSWER), term.chunks
    # answer, then "completed"
    lines = [x.split("\r")[-1] for x in plain.replace("\r\n", "\n").split("\n")]
    answer_at = next(i for i, x in enumerate(lines) if x == ANSWER)
    assert lines[answer_at + 1].startswith("✔ completed in ")
    # history in the user's state directory, not the project
    history = tmp_path / "state" / "flue" / "connect_history"
    assert history.read_text().splitlines()[-1] == "list it" and history.stat().st_mode & 0o077 == 0
    assert not any("history" in p.name for p in (tmp_path / "p").rglob("*"))


def test_connect_history_recalls_the_last_prompt_with_the_up_arrow(tmp_path: Path, slow_model) -> None:
    slow_model.add(reply("first answer"), reply("second answer"))
    root = project(tmp_path / "p", slow_model.url)

    def session(term: Terminal) -> None:
        term.read_until(r"helper> $")
        term.type(b"remember me\r")
        term.read_until(r"completed")
        term.read_until(r"helper> $")
        term.type(b"\x1b[A\r")  # up arrow, Enter: the same prompt again
        term.read_until(r"second answer[\s\S]*completed[\s\S]*helper> $")
        term.type(b"\x04")
        term.read_until(r"\n$", timeout=10)

    code, term = in_terminal(["connect", "helper", "t2"], root, env_for(tmp_path), session)
    assert code == 0, term.text
    prompts = [r["messages"][-1]["content"] for r in slow_model.requests]
    assert prompts == ["remember me", "remember me"]


def test_connect_ctrl_c_at_the_prompt_exits_130_and_restores_the_terminal(tmp_path: Path) -> None:
    import termios

    term = Terminal(["connect", "assistant", f"c-{os.getpid()}"], REPO, env_for(tmp_path))
    try:
        term.read_until(r"assistant> $")
        term.type(b"\x03")  # Ctrl+C while readline waits
        code = term.proc.wait(timeout=15)
        lflag = termios.tcgetattr(term.main)[3]
    finally:
        term.close()
    assert code == 130
    assert lflag & termios.ECHO and lflag & termios.ICANON  # not left in readline's mode


def test_connect_in_a_pipe_is_plain(tmp_path: Path, slow_model) -> None:
    script(slow_model)
    root = project(tmp_path / "p", slow_model.url)
    proc = subprocess.run([sys.executable, "-m", "flue", "connect", "helper", "p1"], cwd=root, env=env_for(tmp_path),
                          input="list it\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"text": ANSWER}
    for stream in (proc.stdout, proc.stderr):
        assert "\x1b" not in stream and "\r" not in stream and not any(f in stream for f in SPINNER_FRAMES)
    lines = proc.stderr.splitlines()
    assert lines[0] == "connected to helper/p1 (session default); Ctrl+D to exit"
    assert "  → bash {\"command\": \"echo tool-output-line\"}" in lines
    assert "    │ tool-output-line" in lines
    assert re.fullmatch(r"✔ completed in \d+\.\d\ds", lines[-1])
    assert "waiting for the model" not in proc.stderr and "helper>" not in proc.stderr


def test_connect_on_the_example_project_streams_offline(tmp_path: Path) -> None:
    """The README's project (offline model): a terminal sees the answer and "completed"."""

    def session(term: Terminal) -> None:
        term.read_until(r"assistant> $")
        term.type(b"A greeting for Bo.\r")
        term.read_until(r"completed in")
        term.read_until(r"assistant> $")
        term.type(b"\x04")
        term.read_until(r"\n$", timeout=10)

    code, term = in_terminal(["connect", "assistant", f"t-{os.getpid()}"], REPO, env_for(tmp_path), session)
    assert code == 0, term.text
    plain = ANSI.sub("", term.text)
    assert "Hello, Bo! It is a real pleasure to meet you.\r\n✔ completed in " in plain
    assert any(f in term.text for f in SPINNER_FRAMES)


def test_run_on_a_terminal_shows_the_shell_step_with_a_spinner(tmp_path: Path, slow_model) -> None:
    root = project(tmp_path / "p", slow_model.url)

    def session(term: Terminal) -> None:
        term.read_until(r"run completed[\s\S]*\"shell-said-hi\"")

    code, term = in_terminal(["run", "slow"], root, env_for(tmp_path), session)
    assert code == 0, term.text
    plain = ANSI.sub("", term.text)
    assert re.search(r"running shell step (0\.[1-9]|[1-9]\d*\.\d)s", plain)  # the elapsed time goes up
    assert "│ shell-said-hi" in plain and '"shell-said-hi"' in plain
    assert "● shell [default]" in plain  # not the internal harness name
    assert plain.count("run_") == 1  # the run id, once


def test_run_in_a_pipe_is_plain(tmp_path: Path, slow_model) -> None:
    root = project(tmp_path / "p", slow_model.url)
    proc = subprocess.run([sys.executable, "-m", "flue", "run", "slow"], cwd=root, env=env_for(tmp_path),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == "shell-said-hi"
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    assert not any(f in proc.stderr for f in SPINNER_FRAMES)
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("▶ run run_") and proc.stderr.count("run_") == 1
    assert "    │ shell-said-hi" in lines
