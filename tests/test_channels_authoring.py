"""Writing channels: conversation keys, YAML rules and Python modules checked at load (diagnostics
with file and line from ``flue info``), and Python channel callbacks served over HTTP."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from conftest import run_flue
from fixtures.server.support import scratch_project, served, until
from flue_channels.testing import FakeSlack, dumps, slack_headers

from flue.channels.keys import (
    GitHubIssue,
    InvalidConversationKey,
    InvalidConversationRef,
    SlackThread,
    conversation_key,
    find_conversation,
    parse_conversation_key,
)
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

# -- conversation keys -------------------------------------------------------------------------


def test_conversation_keys_are_flues_formats_and_round_trip() -> None:
    assert conversation_key("slack", team="T1", channel="C2", thread="1700000000.000100") == "slack:v1:T1:C2:1700000000.000100"
    assert conversation_key("slack", teamId="T1", channelId="C2", threadTs="1.2") == "slack:v1:T1:C2:1.2"
    assert conversation_key("github", owner="octo", repo="hello-world", issue_number=7) == (
        "github:v1:owner:octo:repo:hello-world:issue:7"
    )
    odd = conversation_key("github", owner="o:o", repo="r/ü", issue=3)
    assert odd == "github:v1:owner:o%3Ao:repo:r%2F%C3%BC:issue:3"  # encodeURIComponent
    assert parse_conversation_key(odd) == GitHubIssue(owner="o:o", repo="r/ü", issue=3)
    assert parse_conversation_key("slack:v1:T1:C2:1.2", "slack") == SlackThread(team="T1", channel="C2", thread="1.2")
    for bad in ("slack:v1:T1:C2", "slack:v1:T1:C2:1.2:x", "slack:v1:%54:C:1", "github:v1:owner:o:repo:r:issue:07",
                "github:v1:owner:o:repo:r:issue:0", "slack:v1:T:C:%zz", "u1", ""):
        assert find_conversation(bad) is None, bad
    with pytest.raises(InvalidConversationKey):
        parse_conversation_key("github:v1:owner:o:repo:r:issue:1", "slack")
    for fields in ({"team": "", "channel": "C", "thread": "1"}, {"team": " T", "channel": "C", "thread": "1"},
                   {"team": "T", "channel": "C"}):
        with pytest.raises(InvalidConversationRef):
            conversation_key("slack", **fields)
    with pytest.raises(InvalidConversationRef):
        conversation_key("github", owner="o", repo="r", issue=True)


# -- diagnostics at load -----------------------------------------------------------------------

BROKEN = {
    "agents/helper.md": "---\ndescription: h\ntools: []\n---\nHi {{ instance.id }}\n",
    "channels/typo.yaml": "kind: slack\nsigning_secret_env: S\nsigning_secret: oops\nevents: {}\n",
    "channels/rules.yaml": textwrap.dedent(
        """\
        kind: slack
        signing_secret_env: FLUE_TEST_UNSET_SECRET
        events:
          app_mention:
            agent: nobody
          message:
            - agent: helper
              input: {text: "{{ event.text "}
            - agent: helper
              when: "evnt.user == 'U1'"
        """
    ),
    "channels/noreply.yaml": "kind: github\nwebhook_secret_env: S\nevents:\n  issues: {agent: helper, reply: true}\n",
    "channels/noid.yaml": "kind: webhook\nsecret_env: S\npath: /in/../x\nevents:\n  '*': {agent: helper}\n",
    "channels/nosurface.yaml": "kind: slack\nsigning_secret_env: S\n",
    "channels/routes.py": textwrap.dedent(
        """\
        async def handler(request):
            return None

        channel = {"routes": [
            {"method": "post", "path": "/a", "handler": handler},
            {"method": "POST", "path": "/../b", "handler": handler},
            {"method": "POST", "path": "/c", "handler": handler},
            {"method": "POST", "path": "/c", "handler": handler},
        ]}
        """
    ),
    "channels/crash.py": "import os\n\nSECRET = os.environ['FLUE_TEST_NOT_SET']\n",
    "channels/noexport.py": "x = 1\n",
}


def test_channel_problems_are_diagnostics_with_file_and_line(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9/v1", BROKEN)
    proc = run_flue("info", "--json", "--root", str(root), env={"S": "set"})
    doc = json.loads(proc.stdout)
    assert proc.returncode == 1
    found = {(d["file"], d["line"], d["code"]) for d in doc["diagnostics"] if d["file"] and "channels/" in d["file"]}
    expected = {
        ("channels/typo.yaml", 3, "channel.unknown-key"),
        ("channels/rules.yaml", 5, "channel.unknown-agent"),
        ("channels/rules.yaml", 8, "channel.template-syntax"),
        ("channels/rules.yaml", 10, "channel.unknown-variable"),
        ("channels/noreply.yaml", 1, "channel.wrong-type"),
        ("channels/noid.yaml", 3, "channel.invalid-route"),
        ("channels/noid.yaml", 5, "channel.missing-id"),
        ("channels/nosurface.yaml", 1, "channel.wrong-type"),
        ("channels/routes.py", 4, "channel.invalid-route"),
        ("channels/crash.py", 3, "channel.load-failed"),
        ("channels/noexport.py", None, "channel.missing-export"),
    }
    assert expected <= found, sorted(found - expected)
    messages = " | ".join(d["message"] for d in doc["diagnostics"])
    assert "reply: true need token_env" in messages
    assert "'evnt'" in messages and "duplicate route 'POST /c'" in messages and "uppercase" in messages
    assert "FLUE_TEST_NOT_SET" in messages
    assert "oops" not in proc.stdout.replace("'signing_secret'", "")  # no option value is echoed


def test_flue_info_lists_routes_and_rules(tmp_path: Path) -> None:
    files = {
        "agents/helper.md": "---\ndescription: h\ntools: []\n---\nHi\n",
        "channels/slack.yaml": textwrap.dedent(
            """\
            kind: slack
            signing_secret_env: S
            bot_token_env: T
            events:
              app_mention: {agent: helper, reply: true}
            commands:
              /ask: {agent: helper, id: "{{ payload.channel_id }}"}
            """
        ),
    }
    root = scratch_project(tmp_path, "http://127.0.0.1:9/v1", files)
    proc = run_flue("info", "--json", "--root", str(root), env={"S": "x", "T": "y"})
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["diagnostics"]
    assert [c for c in doc["channels"] if c["name"] == "slack"] == [{
        "name": "slack", "file": "channels/slack.yaml", "kind": "slack", "source": "yaml",
        "routes": ["POST /events", "POST /commands"],
        "rules": [{"on": "events.app_mention", "agent": "helper", "reply": True},
                  {"on": "commands./ask", "agent": "helper", "reply": False}],
    }]
    text = run_flue("info", "--root", str(root), env={"S": "x", "T": "y", "COLUMNS": "200"}).stdout
    assert "POST /channels/slack/events" in text and "events.app_mention -> helper (reply)" in text


# -- Python channel modules ----------------------------------------------------------------------

SECRET = "python-channel-secret"
TOKEN = "xoxb-python"

PY_SLACK = textwrap.dedent(
    '''
    import os

    from aiohttp import web
    from flue_channels import slack_channel


    async def events(payload, request):
        if payload["type"] != "event_callback":
            return  # nothing to say: an empty 200
        event = payload["event"]
        if event["type"] == "reaction_added":
            return {"seen": event["reaction"]}  # JSON
        if event["type"] == "app_mention":
            thread = event.get("thread_ts") or event["ts"]
            receipt = await channel.dispatch(
                "helper",
                id=channel.conversation_key(team=payload["team_id"], channel=event["channel"], thread=thread),
                input={"text": event["text"]},
                dispatch_id=payload["event_id"],
                reply=True,
            )
            return web.json_response({"dispatchId": receipt.dispatch_id}, status=202)


    channel = slack_channel(
        signing_secret=os.environ["FLUE_PY_SLACK_SECRET"], events=events,
        bot_token=os.environ["FLUE_PY_SLACK_TOKEN"], api_url=os.environ["FLUE_PY_SLACK_API"],
    )
    '''
)

PY_RAW = textwrap.dedent(
    '''
    async def ack(request):
        body = await request.read()
        return None


    channel = {"routes": [{"method": "POST", "path": "/hooks/ack", "handler": ack}]}
    '''
)


async def test_python_channels_answer_none_with_an_empty_200_and_dispatch_with_replies(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = scripted_model_server
    model.add(reply("Hello from Python."))
    async with FakeSlack(token=TOKEN) as slack:
        monkeypatch.setenv("FLUE_PY_SLACK_SECRET", SECRET)
        monkeypatch.setenv("FLUE_PY_SLACK_TOKEN", TOKEN)
        monkeypatch.setenv("FLUE_PY_SLACK_API", slack.api_url)
        root = scratch_project(tmp_path, model.url, {
            "agents/helper.md": "---\ndescription: h\ntools: []\n---\nHi\n",
            "channels/pyslack.py": PY_SLACK, "channels/raw.py": PY_RAW,
        })
        async with served(root) as srv:
            resp = await srv.client.post("/channels/raw/hooks/ack", data=b"anything")
            assert (resp.status, await resp.read()) == (200, b"")

            async def send(payload: dict) -> tuple[int, bytes]:
                body = dumps(payload)
                r = await srv.client.post("/channels/pyslack/events", data=body, headers=slack_headers(SECRET, body))
                return r.status, await r.read()

            assert await send({"type": "app_rate_limited", "minute_rate_limited": 1}) == (200, b"")
            status, body = await send({"type": "event_callback", "team_id": "T9", "event_id": "Ev9",
                                       "event": {"type": "reaction_added", "reaction": "tada"}})
            assert (status, json.loads(body)) == (200, {"seen": "tada"})
            mention = {"type": "event_callback", "team_id": "T9", "event_id": "Ev10",
                       "event": {"type": "app_mention", "channel": "C9", "text": "hi", "ts": "5.5"}}
            status, body = await send(mention)
            assert (status, json.loads(body)) == (202, {"dispatchId": "Ev10"})
            assert (await send(mention))[0] == 202  # the same event again: the same receipt, no second reply
            await until(lambda: len(slack.messages) == 1)
            assert slack.messages == [{"channel": "C9", "thread_ts": "5.5", "text": "Hello from Python."}]
            assert len(model.requests) == 1


async def test_a_rule_that_cannot_render_for_an_event_dispatches_nothing_and_answers_200(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLUE_PY_SLACK_SECRET", SECRET)
    root = scratch_project(tmp_path, scripted_model_server.url, {
        "agents/helper.md": "---\ndescription: h\ntools: []\n---\nHi\n",
        "channels/slack.yaml": "kind: slack\nsigning_secret_env: FLUE_PY_SLACK_SECRET\nevents:\n  app_mention: {agent: helper}\n",
    })
    async with served(root) as srv:
        # an app_mention without a channel: its conversation key cannot be built
        body = dumps({"type": "event_callback", "team_id": "T1", "event_id": "Ev1",
                      "event": {"type": "app_mention", "text": "hi", "ts": "1.1"}})
        resp = await srv.client.post("/channels/slack/events", data=body, headers=slack_headers(SECRET, body))
        assert (resp.status, await resp.read()) == (200, b"")
        assert await srv.runtime.stores.submissions.get_by_dispatch_id("slack:Ev1") is None
        # a secret whose env var disappeared is a 500 naming the variable to the developer only
        monkeypatch.delenv("FLUE_PY_SLACK_SECRET")
        resp = await srv.client.post("/channels/slack/events", data=body, headers=slack_headers(SECRET, body))
        assert resp.status == 500 and (await resp.json())["error"]["type"] == "internal_error"
        assert "FLUE_PY_SLACK_SECRET" not in await resp.text()


# -- agents that know their instance --------------------------------------------------------------

WHERE_TOOL = textwrap.dedent(
    '''
    from flue import ToolContext, hookimpl, tool


    @tool
    async def where_am_i(ctx: ToolContext) -> dict:
        "Say which conversation this agent instance answers."
        ref = ctx.instance.conversation
        return {"id": ctx.instance.id, "provider": ref.provider if ref else None,
                "thread": getattr(ref, "thread", None)}


    @hookimpl
    def flue_tools():
        return [where_am_i]
    '''
)


async def test_tools_and_instructions_read_the_instance_and_its_conversation(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    from flue.testing import calls, tool_call

    model = scripted_model_server
    model.add(calls(tool_call("where_am_i")), reply("done"), reply("plain"))
    agent = ("---\ndescription: h\ntools: [where_am_i]\n---\n"
             "I am {{ instance.id }}{% if instance.conversation %} in {{ instance.conversation.provider }}{% endif %}.\n")
    root = scratch_project(tmp_path, model.url, {"agents/helper.md": agent, "plugins/where.py": WHERE_TOOL})
    async with served(root) as srv:
        coordinator = srv.runtime.coordinator
        sub, _ = await coordinator.admit("helper", "slack:v1:T1:C1:9.9", {"text": "where?"}, kind="dispatch")
        assert (await coordinator.wait(sub.submission_id, timeout=30)).status == "completed"
        sub, _ = await coordinator.admit("helper", "customer-7", {"text": "and here?"}, kind="dispatch")
        assert (await coordinator.wait(sub.submission_id, timeout=30)).status == "completed"
    first, second, third = model.requests
    assert first["messages"][0]["content"].startswith("I am slack:v1:T1:C1:9.9 in slack.")
    tool_result = next(m for m in second["messages"] if m["role"] == "tool")
    assert json.loads(tool_result["content"]) == {"id": "slack:v1:T1:C1:9.9", "provider": "slack", "thread": "9.9"}
    assert third["messages"][0]["content"].startswith("I am customer-7.")
