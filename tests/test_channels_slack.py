"""The ``slack`` channel against a real ``flue start`` over HTTP, answering to a local fake Slack API.

The project is on disk (an agent, ``channels/slack.yaml``), the model is the
scripted OpenAI-compatible server, and Slack's side is played by requests
signed exactly as Slack signs them plus :class:`flue_channels.testing.FakeSlack`
receiving ``chat.postMessage``.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from pathlib import Path
from urllib.parse import quote

import httpx
from fixtures.server.support import flue_server, scratch_project, until
from flue_channels.testing import FakeSlack, dumps, slack_headers

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

SECRET = "slack-signing-secret-for-tests"
TOKEN = "xoxb-token-for-tests"
THREAD = "1700000000.000100"
KEY = f"slack:v1:T1:C1:{THREAD}"

AGENT = textwrap.dedent(
    """\
    ---
    description: answers Slack mentions
    http: true
    tools: []
    ---
    You answer in Slack.
    {% if instance.conversation %}Thread {{ instance.conversation.thread }} of channel {{ instance.conversation.channel }}.{% endif %}
    """
)


def channel_file(api_url: str) -> str:
    return textwrap.dedent(
        f"""\
        kind: slack
        signing_secret_env: SLACK_SIGNING_SECRET
        bot_token_env: SLACK_BOT_TOKEN
        api_url: {api_url}
        events:
          app_mention:
            agent: helper
            id: "{{{{ conversation_key(team=payload.team_id, channel=event.channel, thread=event.thread_ts or event.ts) }}}}"
            input: {{text: "{{{{ event.text }}}}", user: "{{{{ event.user }}}}"}}
            reply: true
        """
    )


def mention(event_id: str = "Ev1", text: str = "<@UBOT> what is up?") -> bytes:
    return dumps({
        "type": "event_callback", "token": "legacy-verification-token", "team_id": "T1", "api_app_id": "A1",
        "event_id": event_id, "event_time": 1700000000,
        "event": {"type": "app_mention", "channel": "C1", "user": "U1", "text": text, "ts": THREAD},
    })


def project(tmp_path: Path, model: ScriptedModelServer, slack: FakeSlack) -> Path:
    return scratch_project(tmp_path, model.url, {"agents/helper.md": AGENT, "channels/slack.yaml": channel_file(slack.api_url)})


pytest_plugins = ["flue.testing.pytest_plugin"]

ENV = {"SLACK_SIGNING_SECRET": SECRET, "SLACK_BOT_TOKEN": TOKEN}


async def test_an_app_mention_is_answered_once_in_its_thread(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("Nothing much, and you?"))
    async with FakeSlack(token=TOKEN) as slack:
        root = project(tmp_path, model, slack)
        async with flue_server("start", cwd=root, env=ENV) as srv, httpx.AsyncClient(timeout=15) as client:
            body = mention()
            first = await client.post(f"{srv.url}/channels/slack/events", content=body, headers=slack_headers(SECRET, body))
            assert (first.status_code, first.content) == (200, b"")
            # Slack retries a delivery it thinks failed: the same event id, signed again
            retry = await client.post(f"{srv.url}/channels/slack/events", content=body,
                                      headers={**slack_headers(SECRET, body), "X-Slack-Retry-Num": "1"})
            assert (retry.status_code, retry.content) == (200, b"")

            await until(lambda: len(slack.messages) >= 1)
            assert slack.messages == [{"channel": "C1", "thread_ts": THREAD, "text": "Nothing much, and you?"}]

            # the agent knew its instance: the conversation key parsed into its instructions
            system = model.requests[0]["messages"][0]["content"]
            assert f"Thread {THREAD} of channel C1." in system
            user = json.loads(model.requests[0]["messages"][-1]["content"].split("\n", 1)[1])
            assert user == {"text": "<@UBOT> what is up?", "user": "U1"}

            stream = await client.get(f"{srv.url}/agents/helper/{quote(KEY, safe='')}")
            events = stream.json()
            assert [e["type"] for e in events].count("submission_admitted") == 1
            assert [e["type"] for e in events].count("submission_settled") == 1
            logs = [e for e in events if e["type"] == "log"]
            assert [(e["level"], e["message"]) for e in logs] == [("info", "replied in the Slack thread")]
            assert logs[0]["attributes"]["channel"] == "C1" and logs[0]["attributes"]["ts"]
            assert SECRET not in stream.text and TOKEN not in stream.text
            admitted = next(e for e in events if e["type"] == "submission_admitted")
            assert admitted.get("dispatchId", admitted.get("dispatch_id")) == "slack:Ev1"  # the provider's event id

            await asyncio.sleep(0.3)  # a second dispatch or reply would have happened by now
            assert len(model.requests) == 1 and len(slack.calls) == 1


async def test_what_slack_did_not_sign_is_refused(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    async with FakeSlack(token=TOKEN) as slack:
        root = project(tmp_path, model, slack)
        async with flue_server("start", cwd=root, env=ENV) as srv, httpx.AsyncClient(timeout=15) as client:
            url = f"{srv.url}/channels/slack/events"

            challenge = dumps({"type": "url_verification", "token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"})
            resp = await client.post(url, content=challenge, headers=slack_headers(SECRET, challenge))
            assert resp.status_code == 200
            assert resp.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}

            body = mention("Ev2")
            forged = slack_headers("not-the-secret", body)
            other_bytes = slack_headers(SECRET, mention("Ev2", text="something else"))
            stale = slack_headers(SECRET, body, timestamp=int(time.time()) - 6 * 60)
            no_signature = {k: v for k, v in slack_headers(SECRET, body).items() if k != "X-Slack-Signature"}
            for headers in (forged, other_bytes, stale, no_signature):
                resp = await client.post(url, content=body, headers=headers)
                assert (resp.status_code, resp.content) == (401, b""), headers

            big = dumps({"type": "event_callback", "pad": "x" * (1024 * 1024)})
            resp = await client.post(url, content=big, headers=slack_headers(SECRET, big))
            assert resp.status_code == 413

            wrong_type = await client.post(url, content=body, headers={**slack_headers(SECRET, body), "Content-Type": "text/plain"})
            assert wrong_type.status_code == 415
            assert (await client.get(url)).status_code == 405
            assert (await client.get(url)).headers["Allow"] == "POST"
            assert (await client.post(f"{srv.url}/channels/slack/interactions", content=b"")).status_code == 404  # not configured

            # nothing reached the agent
            await asyncio.sleep(0.2)
            assert model.requests == [] and slack.calls == []
            key = quote(f"slack:v1:T1:C1:{THREAD}", safe="")
            assert (await client.get(f"{srv.url}/agents/helper/{key}")).status_code == 404
            assert SECRET not in srv.output
