"""Issue 5: workflows and runs from the command line (flue run, flue connect), end to end.

The model is the scripted OpenAI-compatible server (a real HTTP server on
loopback); `flue` runs as a real subprocess, so litellm, the harness, the
sandbox, persistence and the CLI are all the real ones.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import textwrap
from pathlib import Path

from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]
REPO = Path(__file__).resolve().parent.parent


def scratch_project(root: Path, server_url: str, files: dict[str, str]) -> Path:
    base = {
        "flue.yaml": textwrap.dedent(
            f"""
            model: scripted/chat-model
            providers:
              scripted:
                api: openai-completions
                base_url: {server_url}
                api_key_env: SCRIPTED_KEY
            """
        ),
        ".env": "SCRIPTED_KEY=key-from-dotenv\n",
        "agents/assistant.md": "---\ndescription: test assistant\ntools: []\n---\nYou are terse.\n",
    }
    for rel, text in {**base, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def flue_cli(*args: str, cwd: Path, stdin: str | None = None, timeout: float = 60) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SCRIPTED_KEY"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flue", *args, cwd=cwd, env=env,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


HELLO = '''
"""Greet someone."""


async def run(ctx):
    harness = await ctx.init("assistant")
    session = await harness.session()
    reply = await session.prompt(f"Greet {ctx.payload['name']} warmly.")
    ctx.log.info("greeted", name=ctx.payload["name"])
    return {"greeting": reply.text, "run": ctx.id}
'''


async def test_flue_run_python_workflow(tmp_path, scripted_model_server: ScriptedModelServer):
    server = scripted_model_server
    server.add(reply("Hello, Ada! Lovely to meet you."))
    root = scratch_project(tmp_path, server.url, {"workflows/hello.py": HELLO})

    code, out, err = await flue_cli("run", "hello", "--payload", '{"name":"Ada"}', cwd=root)

    assert code == 0, err
    result = json.loads(out)
    assert result["greeting"] == "Hello, Ada! Lovely to meet you."
    assert result["run"].startswith("run_")
    first_line = err.splitlines()[0]
    assert first_line == f"▶ run {result['run']} (hello)" and err.count(result["run"]) == 1  # the id once
    assert "● prompt" in err and "[info] greeted name=Ada" in err and "✔ run completed" in err
    (request,) = server.requests
    assert request["messages"][-1] == {"role": "user", "content": "Greet Ada warmly."}
    assert server.records[0].headers["authorization"] == "Bearer key-from-dotenv"


async def test_flue_run_failing_workflow_exits_1(tmp_path, scripted_model_server):
    root = scratch_project(
        tmp_path, scripted_model_server.url, {"workflows/boom.py": "async def run(ctx):\n    raise ValueError('no luck today')\n"}
    )
    code, out, err = await flue_cli("run", "boom", cwd=root)
    assert code == 1 and out == ""
    assert "ValueError: no luck today" in err and "✘ run errored" in err


async def test_flue_run_rejects_bad_payload_and_unknown_workflow(tmp_path, scripted_model_server):
    root = scratch_project(tmp_path, scripted_model_server.url, {"workflows/hello.py": HELLO})
    code, _, err = await flue_cli("run", "hello", "--payload", "{name: Ada}", cwd=root)
    assert code == 1 and "not valid JSON" in err and "run " not in err
    code, _, err = await flue_cli("run", "helo", cwd=root)
    assert code == 1 and "unknown workflow 'helo'" in err and "hello" in err
    assert scripted_model_server.requests == []


async def test_yaml_workflow_second_step_templated_on_first_result(tmp_path, scripted_model_server):
    server = scripted_model_server
    server.add(
        calls(tool_call("final_result", {"name": "Ada Lovelace", "field": "mathematics"})),
        reply("Ada Lovelace wrote the first published algorithm."),
    )
    root = scratch_project(
        tmp_path,
        server.url,
        {
            "workflows/profile.yaml": textwrap.dedent(
                """
                agent: assistant
                payload: {type: object, required: [person]}
                steps:
                  - id: who
                    prompt: "Identify {{ payload.person }}."
                    result:
                      type: object
                      required: [name, field]
                      properties: {name: {type: string}, field: {type: string}}
                  - id: fact
                    prompt: "One fact about {{ steps.who.data.name }} in {{ steps.who.data.field }}."
                return:
                  name: "{{ steps.who.data.name }}"
                  fact: "{{ steps.fact.text }}"
                """
            )
        },
    )
    code, out, err = await flue_cli("run", "profile", "--payload", '{"person": "the countess"}', cwd=root)
    assert code == 0, err
    assert json.loads(out) == {"name": "Ada Lovelace", "fact": "Ada Lovelace wrote the first published algorithm."}
    assert server.requests[1]["messages"][-1]["content"] == "One fact about Ada Lovelace in mathematics."
    # the payload schema is checked before anything runs
    code, _, err = await flue_cli("run", "profile", "--payload", "{}", cwd=root)
    assert code == 1 and "person" in err


async def test_yaml_shell_step_without_agent(tmp_path, scripted_model_server):
    root = scratch_project(
        tmp_path,
        scripted_model_server.url,
        {"workflows/sh.yaml": 'steps:\n  - id: up\n    shell: "echo {{ payload.word }} | tr a-z A-Z"\nreturn: "{{ steps.up.stdout | trim }}"\n'},
    )
    code, out, err = await flue_cli("run", "sh", "--payload", '{"word": "quiet"}', cwd=root)
    assert code == 0, err
    assert json.loads(out) == "QUIET"


async def test_flue_connect_carries_history_across_lines(tmp_path, scripted_model_server):
    server = scripted_model_server
    server.add(reply("Hi there."), reply("You said hi."))
    root = scratch_project(tmp_path, server.url, {})

    code, out, err = await flue_cli("connect", "assistant", "local", cwd=root, stdin="hi\nwhat did I say?\n")

    assert code == 0, err
    assert json_objects(out) == [{"text": "Hi there."}, {"text": "You said hi."}]  # stdout is a pipe: JSON
    assert out.startswith('{\n  "text": "Hi there."\n}\n')  # indented, as Flue prints it
    first, second = server.requests
    assert first["messages"][1:] == [{"role": "user", "content": "hi"}]
    assert second["messages"][1:] == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hi there."},
        {"role": "user", "content": "what did I say?"},
    ]


def json_objects(text: str) -> list[object]:
    """The JSON values printed one after another in ``text``."""
    decoder, out, at, text = json.JSONDecoder(), [], 0, text.strip()
    while at < len(text):
        value, at = decoder.raw_decode(text, at)
        out.append(value)
        while at < len(text) and text[at].isspace():
            at += 1
    return out


def test_flue_connect_prints_plain_text_in_a_terminal(tmp_path):
    import os
    import pty
    import subprocess

    from flue.testing.model_server import ScriptedModelServer

    async def serve_and_connect() -> tuple[int, str]:
        async with ScriptedModelServer([reply("Hello, terminal.")]) as server:
            root = scratch_project(tmp_path, server.url, {})
            main, child = pty.openpty()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "flue", "connect", "assistant", "tty", cwd=root,
                stdin=subprocess.PIPE, stdout=child, stderr=subprocess.DEVNULL,
            )
            os.close(child)
            await asyncio.wait_for(proc.communicate(b"hello\n"), 60)
            chunks = []
            while True:
                try:
                    chunk = os.read(main, 4096)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(main)
            return proc.returncode or 0, b"".join(chunks).decode()

    code, out = asyncio.run(serve_and_connect())
    assert code == 0
    assert out.replace("\r\n", "\n") == "Hello, terminal.\n"


async def test_flue_connect_json_flag(tmp_path, scripted_model_server):
    scripted_model_server.add(reply('Say "hi".'))
    root = scratch_project(tmp_path, scripted_model_server.url, {})
    code, out, err = await flue_cli("connect", "assistant", "j", "--json", cwd=root, stdin="go\n")
    assert code == 0, err
    assert json_objects(out) == [{"text": 'Say "hi".'}]


async def test_example_project_workflows_run_offline():
    """The README's main command: the example project's workflows, with its offline model."""
    repo = REPO
    os.environ.pop("FLUE_MODEL", None)
    code, out, err = await flue_cli("run", "hello", "--payload", '{"name": "Ada"}', cwd=repo)
    assert code == 0, err
    assert json.loads(out) == {"greeting": "Hello, Ada! It is a real pleasure to meet you."}
    code, out, err = await flue_cli("run", "triage", "--payload", '{"message": "I forgot my password"}', cwd=repo)
    assert code == 0, err
    result = json.loads(out)
    assert result["topic"] == "password reset" and result["urgency"] == "high" and "password reset" in result["reply"]
