"""The ``slack`` channel against a real ``flue start`` over HTTP, answering to a local fake Slack API.

The project is on disk (an agent, ``channels/slack.yaml``), the model is the
scripted OpenAI-compatible server, and Slack's side is played by requests
signed exactly as Slack signs them plus :class:`flue_channels.testing.FakeSlack`
receiving ``chat.postMessage``.
"""

from __future__ import annotations

import asyncio
import html
import json
import textwrap
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import httpx
import pytest
from fixtures.server.support import flue_server, scratch_project, served, until
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
            signal = model.requests[0]["messages"][-1]["content"]
            assert signal.startswith('<dispatch type="dispatch_input" agent="helper"') and signal.endswith("</dispatch>")
            user = json.loads(html.unescape(signal.split("\n", 1)[1].rsplit("\n", 1)[0]))
            assert user == {"text": "<@UBOT> what is up?", "user": "U1"}

            # the log follows the reply: Slack has the message before the server hears back from it
            streams: list[httpx.Response] = []

            async def logged() -> bool:
                streams.append(await client.get(f"{srv.url}/agents/helper/{quote(KEY, safe='')}"))
                return any(e["type"] == "log" for e in streams[-1].json())

            await until(logged, timeout=5)
            stream = streams[-1]
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


# -- in-process: the other surfaces, and replies that fail -------------------------------------

SURFACES = textwrap.dedent(
    """\
    kind: slack
    signing_secret_env: SLACK_SIGNING_SECRET
    bot_token_env: SLACK_BOT_TOKEN
    api_url: {api_url}
    events:
      app_mention: {{agent: helper, reply: true}}
    interactions:
      block_actions:
        agent: helper
        id: "approvals-{{{{ payload.user.id }}}}"
        input: {{action: "{{{{ payload.actions[0].action_id }}}}"}}
    commands:
      /ask:
        agent: helper
        id: "{{{{ conversation_key(team=payload.team_id, channel=payload.channel_id, thread=payload.trigger_id) }}}}"
        response: {{response_type: ephemeral, text: "Thinking about: {{{{ payload.text }}}}"}}
    """
)


@pytest.fixture
async def inproc(tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch):
    """The surfaces project served in this process, with its fake Slack."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    async with FakeSlack(token=TOKEN) as slack:
        root = scratch_project(tmp_path, scripted_model_server.url,
                               {"agents/helper.md": AGENT, "channels/slack.yaml": SURFACES.format(api_url=slack.api_url)})
        async with served(root) as srv:
            yield srv, slack, scripted_model_server


async def test_interactions_and_commands_are_verified_forms(inproc) -> None:
    srv, slack, model = inproc
    model.add(reply("ok"), reply("ok"))
    form = "application/x-www-form-urlencoded"
    command = urlencode({"command": "/ask", "text": "the weather", "team_id": "T1", "channel_id": "C1",
                         "user_id": "U1", "trigger_id": "13345224609.738474920.8088930838d88f008e0",
                         "response_url": "https://hooks.slack.com/commands/1234/5678"}).encode()
    resp = await srv.client.post("/channels/slack/commands", data=command, headers=slack_headers(SECRET, command, content_type=form))
    assert resp.status == 200
    assert await resp.json() == {"response_type": "ephemeral", "text": "Thinking about: the weather"}
    sub = await srv.runtime.stores.submissions.get_by_dispatch_id("slack:13345224609.738474920.8088930838d88f008e0")
    assert sub is not None and "response_url" not in json.dumps(sub.input)  # short-lived capabilities stay out

    action = {"type": "block_actions", "user": {"id": "U7"}, "actions": [{"action_id": "approve"}],
              "trigger_id": "t-1", "response_url": "https://hooks.slack.com/actions/x"}
    interaction = urlencode({"payload": json.dumps(action)}).encode()
    resp = await srv.client.post("/channels/slack/interactions", data=interaction,
                                 headers=slack_headers(SECRET, interaction, content_type=form))
    assert (resp.status, await resp.read()) == (200, b"")
    subs = await srv.runtime.stores.submissions.list_for_instance("agents/helper/approvals-U7")
    assert [s.input for s in subs] == [{"action": "approve"}]

    as_json = dumps({"command": "/ask"})
    resp = await srv.client.post("/channels/slack/commands", data=as_json, headers=slack_headers(SECRET, as_json))
    assert resp.status == 415
    two = urlencode([("payload", "{}"), ("payload", "{}")]).encode()
    resp = await srv.client.post("/channels/slack/interactions", data=two, headers=slack_headers(SECRET, two, content_type=form))
    assert resp.status == 400


async def test_slack_replies_are_retried_and_failures_logged_on_the_stream(inproc, monkeypatch) -> None:
    srv, slack, model = inproc
    model.add(reply("first"), reply("second"))
    slack.fail_next(1, status=429, error="ratelimited", headers={"Retry-After": "0"})
    body = mention("EvA")
    await srv.client.post("/channels/slack/events", data=body, headers=slack_headers(SECRET, body))
    await until(lambda: len(slack.messages) == 1)
    assert [c["ok"] for c in slack.calls] == [False, True]

    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked")  # read at reply time: every attempt is refused
    body = dumps({"type": "event_callback", "team_id": "T1", "event_id": "EvB",
                  "event": {"type": "app_mention", "channel": "C1", "text": "again", "ts": "2.2"}})
    await srv.client.post("/channels/slack/events", data=body, headers=slack_headers(SECRET, body))
    url = f"/agents/helper/{quote('slack:v1:T1:C1:2.2', safe='')}"
    errors: list[dict] = []
    for _ in range(200):
        resp = await srv.client.get(url)
        events = await resp.json() if resp.status == 200 else []
        if errors := [e for e in events if e["type"] == "log" and e["level"] == "error"]:
            break
        await asyncio.sleep(0.05)
    assert errors[0]["message"] == "could not reply in the Slack thread: Slack answered 200 (invalid_auth)"
    assert "xoxb" not in json.dumps(events)
