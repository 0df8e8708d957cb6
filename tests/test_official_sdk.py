"""The official TypeScript clients against a real ``flue start``: a Flue client must not notice
it is talking to Python.

``tests/sdk`` pins ``@flue/sdk`` 1.0.0-beta.5 (the release nearest the seeds), 0.11.1 (the last
with the ``admin`` namespace) and TypeScript (``package-lock.json``); ``.ci/run`` installs them
with ``npm ci``. ``tests/sdk/drive.mjs`` runs every step a consumer of the SDK relies on (a plain
prompt, send + stream until ``idle``, a bash tool prompt, workflows and runs, the admin listing)
and records the events; then ``tsc --noEmit`` checks those recorded events against the SDK's own
event union (``AttachedAgentEvent``, ``FlueEvent``), so a field or a ``v`` that differs fails
the build. The model is the stateless echo script behind the scripted OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flue.testing.echo import echo_turn
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

REPO = Path(__file__).resolve().parent.parent
SDK_DIR = REPO / "tests" / "sdk"
TSC = SDK_DIR / "node_modules" / ".bin" / "tsc"
ADMIN_TOKEN = "sdk-admin-token"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (shutil.which("node") and shutil.which("npm")), reason="node and npm are not installed"),
]


def ensure_node_modules() -> None:
    """``npm ci`` once; again only when the lock file is newer than the installed tree."""
    installed = SDK_DIR / "node_modules" / ".package-lock.json"
    lock = SDK_DIR / "package-lock.json"
    if TSC.exists() and installed.exists() and installed.stat().st_mtime >= lock.stat().st_mtime:
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=SDK_DIR, check=True,
                   timeout=300, capture_output=True, text=True)


def write_project(root: Path, model_url: str) -> Path:
    files = {
        "flue.yaml": f"""
            model: mock/echo-model
            providers:
              mock: {{api: openai-completions, base_url: "{model_url}"}}
            admin:
              auth: {{bearer_env: SDK_ADMIN_TOKEN}}
            """,
        "agents/echo.md": """
            ---
            description: Echoes what it is told
            http: true
            tools: [bash]
            ---
            Answer briefly.
            """,
        "workflows/hello.py": """
            http = True


            async def run(ctx):
                ctx.log.info("hello start", {"hasText": bool(ctx.payload.get("text"))})
                harness = await ctx.init("echo")
                session = await harness.session()
                reply = await session.prompt(ctx.payload["text"])
                return {"text": reply.text}
            """,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def ts_check_module(report: dict[str, Any]) -> str:
    """A TypeScript module that assigns every recorded event to the SDK's event union.

    Each event is a ``const`` literal made mutable again (so readonly tuples fit the SDK's array
    types) and assigned without object-literal freshness: extra fields of ours are allowed, as
    structural typing allows them to any consumer, but a missing field, a wrong literal (``v``,
    ``type``, ``outcome``) or a wrong shape is an error. ``submission_admitted`` is our one
    documented addition, declared here."""
    lines = [
        "import type { AttachedAgentEvent, FlueEvent } from '@flue/sdk';",
        "type DeepMutable<T> = { -readonly [K in keyof T]: DeepMutable<T[K]> };",
        "type SubmissionAdmitted = { type: 'submission_admitted'; v: 3; eventIndex: number; timestamp: string;",
        "  instanceId: string; submissionId: string; agentName?: string; dispatchId?: string; input?: unknown };",
        "export function describe(event: FlueEvent): string {  // a consumer narrowing the union",
        "  switch (event.type) {",
        "    case 'text_delta': return event.text;",
        "    case 'tool_start': return `${event.toolName}(${JSON.stringify(event.args)})`;",
        "    case 'tool': return `${event.toolName} ${event.isError ? 'failed' : 'ok'} in ${event.durationMs}ms`;",
        "    case 'operation': return `${event.operationKind}: ${event.usage?.totalTokens ?? 0} tokens`;",
        "    case 'turn': return `${event.request.requestedModel}: ${event.response.finishReason ?? ''}`;",
        "    case 'run_end': return event.isError ? 'failed' : JSON.stringify(event.result);",
        "    case 'submission_settled': return event.outcome;",
        "    default: return event.type;",
        "  }",
        "}",
    ]
    for name, union in (("agentEvents", "AttachedAgentEvent | SubmissionAdmitted"),
                        ("toolEvents", "AttachedAgentEvent | SubmissionAdmitted"), ("runEvents", "FlueEvent")):
        refs = []
        for n, event in enumerate(report[name]):
            var = f"{name}_{n}"
            lines.append(f"const {var} = {json.dumps(event)} as const;")
            refs.append(f"{var} as DeepMutable<typeof {var}>")
        lines.append(f"export const {name}: ({union})[] = [{', '.join(refs)}];")
    return "\n".join(lines) + "\n"


async def test_the_official_sdk_drives_our_server(tmp_path: Path) -> None:
    ensure_node_modules()
    async with ScriptedModelServer() as model:
        model.add(*[echo_turn] * 40)
        root = write_project(tmp_path / "project", model.url)
        env = {"SDK_ADMIN_TOKEN": ADMIN_TOKEN}
        async with FlueServerProcess(root, env=env) as server:
            report_path = tmp_path / "report.json"
            # asynchronously: the scripted model server runs on this test's event loop
            node = await asyncio.create_subprocess_exec(
                "node", str(SDK_DIR / "drive.mjs"), server.url, ADMIN_TOKEN, str(report_path),
                cwd=SDK_DIR, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            try:
                out, err = await asyncio.wait_for(node.communicate(), 120)
            finally:
                if node.returncode is None:
                    node.kill()
            assert node.returncode == 0, f"{out.decode()}\n{err.decode()}\n--- server ---\n{server.output()}"
    report = json.loads(report_path.read_text())

    # The sequences are Flue's (flue-reference.md 7.2): a durable agent submission ...
    assert [e["type"] for e in report["agentEvents"] if e["type"] != "text_delta"] == [
        "submission_admitted", "operation_start", "agent_start", "turn_start", "message_start", "message_end",
        "turn_messages", "turn", "agent_end", "operation", "idle",
    ]
    # ... a tool turn ...
    assert [e["type"] for e in report["toolEvents"] if e["type"] != "text_delta"] == [
        "submission_admitted", "operation_start", "agent_start",
        "turn_start", "message_start", "message_end", "tool_start", "tool", "turn_messages", "turn",
        "turn_start", "message_start", "message_end", "turn_messages", "turn",
        "agent_end", "operation", "idle",
    ]
    # ... and a workflow prompt, inside its run, with the user's message and no turn_request
    assert [e["type"] for e in report["runEvents"] if e["type"] != "text_delta"] == [
        "run_start", "log", "operation_start", "agent_start", "message_start", "message_end", "turn_start",
        "message_start", "message_end", "turn_messages", "turn", "agent_end", "operation", "idle", "run_end",
    ]

    # Type-level use of the SDK's event union over what our server sent.
    typed = await asyncio.to_thread(typecheck, report)
    assert typed.returncode == 0, typed.stdout + typed.stderr


def typecheck(report: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """``tsc --noEmit`` over :func:`ts_check_module` of ``report``, in a scratch folder of
    ``tests/sdk`` (so ``@flue/sdk`` resolves from its ``node_modules``)."""
    check_dir = SDK_DIR / f".check-{os.getpid()}"
    check_dir.mkdir(exist_ok=True)
    try:
        (check_dir / "recorded.ts").write_text(ts_check_module(report))
        (check_dir / "tsconfig.json").write_text(json.dumps({
            "compilerOptions": {"strict": True, "noEmit": True, "module": "nodenext", "moduleResolution": "nodenext",
                                "target": "es2022", "types": []},
            "files": ["recorded.ts"],
        }))
        return subprocess.run([str(TSC), "-p", str(check_dir)], capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(check_dir, ignore_errors=True)


def test_the_type_check_fails_on_a_wrong_event(tmp_path: Path) -> None:
    """The check above can fail: the same module with one event at ``v: 1`` (the seeds' beta.1
    version) or without a required field is rejected by tsc."""
    if not TSC.exists():
        ensure_node_modules()
    idle = {"type": "idle", "v": 3, "eventIndex": 1, "timestamp": "2026-01-01T00:00:00.000Z", "instanceId": "i"}
    settled = {**idle, "type": "submission_settled", "submissionId": "s", "outcome": "completed"}
    for bad in ({**idle, "v": 1}, {k: v for k, v in settled.items() if k != "outcome"}):
        typed = typecheck({"agentEvents": [idle, bad], "toolEvents": [], "runEvents": []})
        assert typed.returncode != 0 and "error TS2322" in typed.stdout, typed.stdout


if __name__ == "__main__":  # pragma: no cover - a manual run prints the report's sequences
    sys.exit(pytest.main([__file__, "-q"]))
