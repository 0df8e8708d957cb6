"""The official Durable Streams conformance suite against Flue's stream read path.

``tests/conformance`` pins ``@durable-streams/server-conformance-tests`` and
vitest (``package-lock.json``); ``.ci/run`` installs them with ``npm ci``
(this test does too when ``node_modules`` is missing or older than the lock).
The suite drives ``python -m flue.testing.stream_conformance``, a test-only app that
adds the PUT/POST/DELETE the suite needs for setup around
``flue.server.streams.read_stream``; only the read-path groups are selected.
Skipped when node/npm are not installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SUITE_DIR = REPO / "tests" / "conformance"
VITEST = SUITE_DIR / "node_modules" / ".bin" / "vitest"

# Top-level describe blocks (and, for mixed blocks, their read-path sub-blocks). vitest
# matches -t against "<describe> <sub-describe> <test>", so anchoring keeps e.g.
# "Fork - JSON Mode" (a write-side feature Flue does not serve) out of "JSON Mode".
GROUPS = [
    "Read Operations",
    "Long-Poll Operations",
    "Long-Poll Edge Cases",
    "SSE Mode",
    "Offset Validation and Resumability",
    "Caching and ETag",
    "HEAD Metadata",
    "HEAD Metadata Edge Cases",
    "Read-Your-Writes Consistency",
    "JSON Mode",
    "Browser Security Headers",
    "Stream Closure HEAD with Stream Closure",
    "Stream Closure Read Closed Streams (Catch-up)",
    "Stream Closure Long-poll with Stream Closure",
    "Stream Closure SSE with Stream Closure",
    "Property-Based Tests (fast-check) Offset Validation Properties",
]
PATTERN = "^(" + "|".join(re.escape(g) for g in GROUPS) + ") "

# Full test names that may fail, each with the reason. Empty: every selected test passes.
EXPECTED_FAILURES: dict[str, str] = {}

SERVER_LONG_POLL_TIMEOUT_S = 2  # the suite's own timeouts are 5 s
SUITE_LONG_POLL_TIMEOUT_MS = 3000
RUN_TIMEOUT_S = 180

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="node and npm are not installed"),
]


def ensure_node_modules() -> None:
    """``npm ci`` once; again only when the lock file is newer than the installed tree."""
    installed = SUITE_DIR / "node_modules" / ".package-lock.json"
    lock = SUITE_DIR / "package-lock.json"
    if VITEST.exists() and installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=SUITE_DIR, check=True, timeout=300, capture_output=True, text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(proc: subprocess.Popen[bytes], port: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"conformance server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"conformance server did not listen on port {port} within {within} s")


def group_of(ancestors: list[str]) -> str:
    for depth in (2, 1):
        name = " ".join(ancestors[:depth])
        if name in GROUPS:
            return name
    return " > ".join(ancestors)


def test_durable_streams_conformance(tmp_path: Path) -> None:
    ensure_node_modules()
    port = free_port()
    server_log = tmp_path / "server.log"
    with server_log.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "flue.testing.stream_conformance", "--port", str(port),
             "--long-poll-timeout", str(SERVER_LONG_POLL_TIMEOUT_S)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(server, port)
            report = tmp_path / "vitest.json"
            started = time.monotonic()
            run = subprocess.run(
                [str(VITEST), "run", "conformance.test.mjs", "-t", PATTERN,
                 "--reporter=json", "--outputFile", str(report)],
                cwd=SUITE_DIR,
                env={**os.environ, "CONFORMANCE_BASE_URL": f"http://127.0.0.1:{port}",
                     "CONFORMANCE_LONG_POLL_TIMEOUT_MS": str(SUITE_LONG_POLL_TIMEOUT_MS), "NO_COLOR": "1"},
                capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
            )
            duration = time.monotonic() - started
        finally:
            server.terminate()
            try:
                server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=5)

    assert report.exists(), f"vitest wrote no report (exit {run.returncode}):\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    results = json.loads(report.read_text())
    counts: Counter[tuple[str, str]] = Counter()
    failures: dict[str, str] = {}
    for file in results["testResults"]:
        for test in file["assertionResults"]:
            if test["status"] == "skipped" and not test["ancestorTitles"]:
                continue
            group = group_of(test["ancestorTitles"])
            counts[(group, test["status"])] += 1
            if test["status"] == "failed":
                name = " > ".join([*test["ancestorTitles"], test["title"]])
                failures[name] = "\n".join(test.get("failureMessages", []))[:800]

    summary = "\n".join(
        f"  {g}: " + ", ".join(f"{counts[(g, s)]} {s}" for s in ("passed", "failed") if counts[(g, s)])
        for g in GROUPS
    )
    print(f"\nDurable Streams conformance ({duration:.1f} s):\n{summary}")

    unexpected = {n: m for n, m in failures.items() if n not in EXPECTED_FAILURES}
    assert not unexpected, "conformance failures:\n" + "\n\n".join(f"{n}\n{m}" for n, m in unexpected.items()) + (
        f"\n\nserver log:\n{server_log.read_text()[-3000:]}"
    )
    # every selected group ran and passed something: a filter that selects nothing must not pass
    for group in GROUPS:
        assert counts[(group, "passed")] > 0, f"no passing tests in {group!r}:\n{summary}"
    assert sum(n for (_, s), n in counts.items() if s == "passed") >= 100
