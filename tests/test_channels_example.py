"""The example project's Slack assistant (channels/slack.yaml) answers offline, with the offline model."""

from __future__ import annotations

import pytest
from fixtures.server.support import REPO, served, until
from flue_channels.testing import FakeSlack, dumps, slack_headers

SECRET = "example-signing-secret"
TOKEN = "xoxb-example"


async def test_the_example_slack_assistant_answers_in_the_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUE_MODEL", raising=False)
    async with FakeSlack(token=TOKEN) as slack:
        monkeypatch.setenv("SLACK_SIGNING_SECRET", SECRET)
        monkeypatch.setenv("SLACK_BOT_TOKEN", TOKEN)
        monkeypatch.setenv("SLACK_API_URL", slack.api_url)
        async with served(REPO) as srv:
            body = dumps({"type": "event_callback", "team_id": "T1", "event_id": "EvExample",
                          "event": {"type": "app_mention", "channel": "C1", "user": "U1",
                                    "text": "<@U0BOT> how do refunds work?", "ts": "1700000000.000200"}})
            resp = await srv.client.post("/channels/slack/events", data=body, headers=slack_headers(SECRET, body))
            assert (resp.status, await resp.read()) == (200, b"")
            await until(lambda: len(slack.messages) == 1)
    assert slack.messages == [{
        "channel": "C1", "thread_ts": "1700000000.000200",
        "text": "You asked: how do refunds work? (I am the offline stand-in model; set FLUE_MODEL for real answers.)",
    }]
