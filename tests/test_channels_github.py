"""The ``github`` channel over HTTP: ``ping``, a signed ``issues.opened`` answered with a comment on a
local fake GitHub API, signatures, limits, and reply failures surfaced on the instance's stream."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest
from fixtures.server.support import scratch_project, served, until
from flue_channels.testing import FakeGitHub, dumps, github_headers

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

SECRET = "github-webhook-secret-for-tests"
TOKEN = "ghp_token_for_tests"
KEY = "github:v1:owner:octo:repo:hello-world:issue:7"

TRIAGE = "---\ndescription: triages issues\nhttp: true\ntools: []\n---\nTriage {{ instance.id }}.\n"


def channel_file(api_url: str) -> str:
    return textwrap.dedent(
        f"""\
        kind: github
        webhook_secret_env: FLUE_GH_SECRET
        token_env: FLUE_GH_TOKEN
        api_url: {api_url}
        events:
          issues.opened: {{agent: triage, reply: true}}
          issue_comment.created:
            agent: triage
            when: "comment.user.type != 'Bot'"
            reply: true
        """
    )


def issue_opened(number: int = 7) -> bytes:
    return dumps({
        "action": "opened",
        "issue": {"number": number, "title": "Crash on start", "body": "It crashes when I start it."},
        "repository": {"name": "hello-world", "owner": {"login": "octo"}},
        "sender": {"login": "someone"},
    })


@pytest.fixture
async def github(tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLUE_GH_SECRET", SECRET)
    monkeypatch.setenv("FLUE_GH_TOKEN", TOKEN)
    async with FakeGitHub(token=TOKEN) as api:
        root = scratch_project(tmp_path, scripted_model_server.url,
                               {"agents/triage.md": TRIAGE, "channels/github.yaml": channel_file(api.api_url)})
        async with served(root) as srv:
            yield srv, api, scripted_model_server


async def post(srv, body: bytes, headers: dict[str, str]):
    return await srv.client.post("/channels/github/webhook", data=body, headers=headers)


async def test_ping_is_answered_and_an_opened_issue_gets_a_comment(github) -> None:
    srv, api, model = github
    ping = dumps({"zen": "Keep it logically awesome.", "hook_id": 1})
    resp = await post(srv, ping, github_headers(SECRET, ping, event="ping", delivery="d-ping"))
    assert (resp.status, await resp.read()) == (200, b"")

    model.add(reply("Thanks! Labelled as a crash; could you share the log?"))
    body = issue_opened()
    headers = github_headers(SECRET, body, event="issues", delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    resp = await post(srv, body, headers)
    assert (resp.status, await resp.read()) == (200, b"")
    await until(lambda: len(api.comments) == 1)
    assert api.comments[0] == {"ok": True, "owner": "octo", "repo": "hello-world", "issue": 7,
                               "body": "Thanks! Labelled as a crash; could you share the log?"}
    # the default input names the event; the instance id is the issue's conversation key
    assert '"type": "github.issues.opened"' in model.requests[0]["messages"][-1]["content"]
    assert f"Triage {KEY}." in model.requests[0]["messages"][0]["content"]

    # a redelivery (GitHub's "Redeliver" keeps the delivery id) is not dispatched again
    resp = await post(srv, body, headers)
    assert resp.status == 200
    await asyncio.sleep(0.2)
    assert len(model.requests) == 1 and len(api.calls) == 1

    # an event no rule names is acknowledged and ignored
    star = dumps({"action": "created", "repository": {"name": "hello-world", "owner": {"login": "octo"}}})
    resp = await post(srv, star, github_headers(SECRET, star, event="star", delivery="d-star"))
    assert (resp.status, await resp.read()) == (200, b"")
    # a rule's `when` can turn events away (the bot's own comments)
    bot = dumps({"action": "created", "issue": {"number": 7}, "comment": {"body": "hi", "user": {"type": "Bot"}},
                 "repository": {"name": "hello-world", "owner": {"login": "octo"}}})
    resp = await post(srv, bot, github_headers(SECRET, bot, event="issue_comment", delivery="d-bot"))
    assert resp.status == 200
    await asyncio.sleep(0.1)
    assert len(model.requests) == 1


async def test_bad_signatures_media_types_and_sizes_are_refused(github) -> None:
    srv, api, model = github
    body = issue_opened()
    good = github_headers(SECRET, body, event="issues", delivery="d1")
    cases = [
        ({**good, "X-Hub-Signature-256": github_headers("wrong", body, event="issues", delivery="d1")["X-Hub-Signature-256"]}, 401),
        ({k: v for k, v in good.items() if k != "X-Hub-Signature-256"}, 401),
        ({**good, "X-Hub-Signature-256": "sha1=" + "0" * 40}, 401),
        ({**good, "Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({k: v for k, v in good.items() if k != "X-GitHub-Delivery"}, 400),
    ]
    for headers, status in cases:
        resp = await post(srv, body, headers)
        assert (resp.status, await resp.read()) == (status, b""), headers
    resp = await post(srv, body + b" ", good)  # a signature over other bytes
    assert resp.status == 401
    not_json = b"[1, 2]"
    resp = await post(srv, not_json, github_headers(SECRET, not_json, event="issues", delivery="d2"))
    assert resp.status == 400
    await asyncio.sleep(0.1)
    assert model.requests == [] and api.calls == []


async def test_reply_failures_are_retried_then_surface_on_the_instance_stream(github) -> None:
    srv, api, model = github
    model.add(reply("First answer."), reply("Second answer."))
    api.fail_next(2, status=502)  # a flaky gateway: the third attempt goes through
    body = issue_opened(7)
    await post(srv, body, github_headers(SECRET, body, event="issues", delivery="d-flaky"))
    await until(lambda: len(api.comments) == 1)
    assert [c["ok"] for c in api.calls] == [False, False, True]

    api.token = "a-rotated-token"  # every attempt is now refused (401): not retried
    body = issue_opened(8)
    await post(srv, body, github_headers(SECRET, body, event="issues", delivery="d-denied"))
    key = quote("github:v1:owner:octo:repo:hello-world:issue:8", safe="")

    async def error_logged() -> list[dict]:
        resp = await srv.client.get(f"/agents/triage/{key}")
        events = await resp.json() if resp.status == 200 else []
        return [e for e in events if e["type"] == "log" and e.get("level") == "error"]

    for _ in range(200):  # up to 10 s
        if errors := await error_logged():
            break
        await asyncio.sleep(0.05)
    assert errors[0]["message"] == "could not reply in the GitHub issue: GitHub answered 401 (Bad credentials)"
    assert errors[0]["attributes"]["attempts"] == 1
    assert len(api.calls) == 4
    resp = await srv.client.get(f"/agents/triage/{key}")
    assert TOKEN not in await resp.text()
