"""Upstream errors and known secrets never reach callers (issue 19), against real servers.

- A model provider that echoes the request's headers (``Authorization``,
  ``x-api-key`` and a custom header) in its error body, through the native
  Chat Completions and Anthropic clients and through litellm (``via:
  litellm``): the caller gets Flue's own message (status, provider, model) in
  the ``?wait=result`` envelope, on the stream (``turn``, ``operation``,
  ``submission_settled``) and in socket error frames; the provider's text is
  in the server log, without the key. A reply that quotes the key comes back
  with ``[redacted]``.
- A workflow whose exception quotes a secret: its ``run_end``, run record and
  envelope say ``[redacted]``; so does what an observer plugin sees.
- ``flue dev`` scrubs the value ``.env`` holds now, after an edit and a reload.
- ``flue info`` scrubs a diagnostic that quotes a secret.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path

import aiohttp
import httpx
import pytest
from fixtures.server.support import flue_cli, flue_server, write_files

from flue.testing import ScriptedTurn
from flue.testing.model_server import ScriptedModelServer

pytestmark = pytest.mark.slow
pytest_plugins = ["flue.testing.pytest_plugin"]

KEY = "sk-upstream-3f9a2c7e51d04b8a"  # the provider key, in the project's .env only
ORG = "org-token-77c1d2e9c4"  # a provider header's value
SECRETS = (KEY, ORG)

SPY_PLUGIN = '''
import json, os

from flue import hookimpl


@hookimpl
def flue_observe(event):
    with open(os.environ["SPY_FILE"], "a") as out:
        out.write(json.dumps(event.model_dump(mode="json"), default=str) + "\\n")
'''


def project(root: Path, model: ScriptedModelServer, spy: Path) -> Path:
    config = textwrap.dedent(f"""\
        model: native/chat
        providers:
          native: {{api: openai-completions, base_url: {model.url}, api_key_env: UPSTREAM_KEY,
                    headers: {{X-Org-Token: "${{ORG_TOKEN}}"}}}}
          claude: {{api: anthropic-messages, base_url: {model.root_url}, api_key_env: UPSTREAM_KEY}}
          lite: {{api: openai-completions, base_url: {model.url}, api_key_env: UPSTREAM_KEY, via: litellm}}
        """)
    agent = "---\nmodel: {}\nhttp: true\ntools: []\n---\nBe brief.\n"
    return write_files(root, {
        "flue.yaml": config,
        ".env": f"UPSTREAM_KEY={KEY}\nORG_TOKEN={ORG}\nSPY_FILE={spy}\n",
        "agents/native.md": agent.format("native/chat"),
        "agents/claude.md": agent.format("claude/sonnet"),
        "agents/lite.md": agent.format("lite/chat"),
        "workflows/leaky.py": (
            "import os\n\nhttp = True\n\n\nasync def run(ctx):\n"
            "    raise RuntimeError('the token ' + os.environ['UPSTREAM_KEY'] + ' was refused')\n"
        ),
        "plugins/spy.py": SPY_PLUGIN,
    })


def assert_clean(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{where} leaks {secret[:6]}...: {text[:2000]}"


def echoing(status: int) -> ScriptedTurn:
    return ScriptedTurn(error_status=status, error_message=f"bad request for {KEY}", echo_request=True)


async def socket_frames(url: str, message: str) -> list[dict]:
    frames: list[dict] = []
    async with aiohttp.ClientSession() as http, http.ws_connect(url) as ws:
        frames.append(await ws.receive_json(timeout=10))
        await ws.send_json({"version": 1, "type": "prompt", "requestId": "p1", "message": message})
        async with asyncio.timeout(20):
            while frames[-1]["type"] not in ("result", "error"):
                frames.append(await ws.receive_json())
    return frames


async def test_upstream_errors_and_secrets_never_reach_callers(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    model, spy = scripted_model_server, tmp_path / "spy.ndjson"
    root = project(tmp_path / "p", model, spy)
    async with flue_server("start", cwd=root) as server, httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        expected = {
            "native": "HTTP 400 from provider 'native'",
            "claude": "HTTP 401 from provider 'claude': the API key was refused; check UPSTREAM_KEY",
            "lite": "HTTP 400 from provider 'lite'",
        }
        for agent, status in (("native", 400), ("claude", 401), ("lite", 400)):
            model.add(echoing(status))
            resp = await client.post(f"/agents/{agent}/u1", params={"wait": "result"}, json={"message": "hi"})
            assert resp.status_code == 500, resp.text
            assert_clean(resp.text, f"{agent}: the ?wait=result envelope")
            error = resp.json()["error"]
            assert expected[agent] in error["message"] and f"'{agent}/" in error["message"], error
            events = (await client.get(f"/agents/{agent}/u1")).json()
            assert_clean(json.dumps(events), f"{agent}: the stream")
            failed = {e["type"]: e for e in events if e["type"] in ("turn", "operation", "submission_settled")}
            assert set(failed) == {"turn", "operation", "submission_settled"}
            assert expected[agent] in failed["submission_settled"]["error"]["message"]
            assert expected[agent] in failed["operation"]["error"]["message"]
        # the provider was really sent the key, and echoed it back
        assert model.records[0].headers["authorization"] == f"Bearer {KEY}"
        assert model.records[0].headers["x-org-token"] == ORG
        assert model.records[1].headers["x-api-key"] == KEY

        # a model that says the key: the result and the whole texts say [redacted] (the 4-character
        # text deltas carry pieces of it, which no scrubber can recognise)
        model.add(ScriptedTurn(text=f"the key is {KEY}."))
        resp = await client.post("/agents/native/u2", params={"wait": "result"}, json={"message": "hi"})
        assert resp.json()["result"]["text"] == "the key is [redacted]."
        events = (await client.get("/agents/native/u2")).json()
        assert_clean(json.dumps(events), "a reply's stream")
        ended = [e for e in events if e["type"] == "message_end"][-1]
        assert "the key is [redacted]." in json.dumps(ended)

        # a socket's error frame
        model.add(echoing(400))
        frames = await socket_frames(f"{server.url}/agents/native/ws1", "hi")
        assert frames[-1]["type"] == "error" and expected["native"] in frames[-1]["error"]["message"]
        assert_clean(json.dumps(frames), "the socket")

        # a workflow whose exception quotes the key: the envelope, its stream and its record
        resp = await client.post("/workflows/leaky", params={"wait": "result"})
        assert resp.status_code == 500 and resp.json()["error"]["type"] == "internal_error"
        run_id = resp.headers["X-Flue-Run-Id"]
        run_end = (await client.get(f"/runs/{run_id}")).json()[-1]
        assert run_end["type"] == "run_end"
        assert run_end["error"]["message"] == "the token [redacted] was refused"
        record = (await client.get(f"/runs/{run_id}", params={"meta": ""})).json()
        assert record["error"]["message"] == "the token [redacted] was refused"

        seen = spy.read_text()
        assert_clean(seen, "an observer plugin")
        assert "the token [redacted] was refused" in seen and '"type": "turn_request"' in seen
    log = server.output
    assert_clean(log, "the server log")
    # the provider's own answer is in the log, for the operator
    assert "request headers" in log and "bad request for" in log


async def test_flue_dev_scrubs_what_env_holds_after_a_reload(tmp_path: Path) -> None:
    first, second = "first-token-0a1b2c3d", "second-token-4e5f6a7b"
    root = write_files(tmp_path, {
        "flue.yaml": "admin: {auth: {bearer_env: ADMIN_TOKEN}}\n",
        ".env": f"ADMIN_TOKEN={first}\n",
        "workflows/echo.py": "import os\n\nhttp = True\n\n\nasync def run(ctx):\n"
                             "    return {'token': os.environ['ADMIN_TOKEN']}\n",
    })
    async with flue_server("dev", cwd=root) as dev, httpx.AsyncClient(base_url=dev.url, timeout=30) as client:
        resp = await client.post("/workflows/echo", params={"wait": "result"})
        assert resp.json()["result"] == {"token": "[redacted]"}
        mark = len(dev.lines)
        (root / ".env").write_text(f"ADMIN_TOKEN={second}\n")
        await dev.wait_for_line(r"^flue dev: reloaded$", after=mark)
        resp = await client.post("/workflows/echo", params={"wait": "result"})
        assert resp.json()["result"] == {"token": "[redacted]"}
        events = (await client.get(f"/runs/{resp.json()['runId']}")).text
        assert second not in events and first not in events


async def test_flue_info_scrubs_a_diagnostic_that_quotes_a_secret(tmp_path: Path) -> None:
    root = write_files(tmp_path, {
        "flue.yaml": "providers:\n  corp: {api: openai-completions, base_url: 'http://127.0.0.1:9', "
                     "api_key_env: CORP_KEY}\n",
        ".env": f"CORP_KEY={KEY}\n",
        "agents/a.md": "---\nmodel: corp/m\n---\nHi.\n",
        "plugins/broken.py": "import os\n\nraise ValueError('cannot use key ' + os.environ['CORP_KEY'])\n",
    })
    for flags in (["--json"], []):
        code, out, err = await flue_cli("info", *flags, cwd=root)
        assert code == 1  # the plugin's import error is an error diagnostic
        assert KEY not in out + err and "cannot use key [redacted]" in out, out
