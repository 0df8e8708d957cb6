"""The OpenAPI document matches the server: schemathesis against a real ``flue start`` (issue 19).

A scratch project with what the document describes: an open and a
token-guarded agent (the scripted model server answers every prompt), a Python
workflow taking any JSON and a YAML workflow with a payload schema (its own
path), and small ``limits:`` so their edges are reached. ``st run`` checks
every response it provokes against the document (status codes, headers, bodies,
content types, ``Allow``, positive data accepted and negative data rejected),
bounded in examples and time, with a fixed seed. Apart from the hypothesis
corpus of test_hardening_inputs.py, which is about inputs breaking the server.
"""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures.processes import run_bounded
from fixtures.server.support import write_files

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

pytestmark = pytest.mark.slow
pytest_plugins = ["flue.testing.pytest_plugin"]

TOKEN = "conformance-token-1234"
SCHEMATHESIS = Path(sys.executable).with_name("st")


def project(root: Path, model_url: str) -> Path:
    agent = "---\ndescription: {}\nhttp: {}\ntools: []\n---\nBe brief.\n"
    return write_files(root, {
        "flue.yaml": textwrap.dedent(f"""\
            model: scripted/chat
            providers:
              scripted: {{api: openai-completions, base_url: {model_url}, api_key: conformance-key}}
            limits: {{message: 2000, images: 2, image: 4000, payload: 20 kB, body: 64 kB}}
            """),
        "agents/assistant.md": agent.format("open", "true"),
        "agents/guarded.md": agent.format("needs a token", "{auth: {bearer_env: CONFORMANCE_TOKEN}}"),
        "workflows/echo.py": "http = True\n\n\nasync def run(ctx):\n    return {'payload': ctx.payload}\n",
        "workflows/count.yaml": textwrap.dedent("""\
            http: true
            payload:
              type: object
              required: [n]
              properties: {n: {type: integer, minimum: 0, maximum: 99}}
            steps:
              - id: say
                shell: "echo {{ payload.n }}"
            return: {out: "{{ steps.say.stdout }}"}
            """),
    })


async def test_schemathesis_finds_no_mismatch(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(*[reply("ok")] * 5000)
    root = project(tmp_path / "project", scripted_model_server.url)
    async with FlueServerProcess(root, env={"CONFORMANCE_TOKEN": TOKEN}) as server:
        code, report = await run_bounded(
            str(SCHEMATHESIS), "run", f"{server.url}/openapi.json", "--checks", "all",
            "--max-examples", os.environ.get("FLUE_SCHEMATHESIS_EXAMPLES", "25"),
            "--max-time", os.environ.get("FLUE_SCHEMATHESIS_SECONDS", "8"),
            "--seed", os.environ.get("FLUE_SCHEMATHESIS_SEED", "19"), "--workers", "1",
            "--request-timeout", "10", "--no-color", "--generation-database", "none",
            "--phases", "examples,coverage,fuzzing", cwd=tmp_path, timeout=120,
        )
        assert code == 0, report[-8000:] + "\n--- server ---\n" + server.output()[-3000:]
        assert "5 selected / 5 total" in report and "failed" not in report
