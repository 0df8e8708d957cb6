"""The ``slack`` channel: Events API, interactivity and slash commands, verified.

Each surface is published only when configured: ``events`` -> ``POST
/events``, ``interactions`` -> ``POST /interactions``, ``commands`` -> ``POST
/commands``. Every request is checked in this order, each failure a bodyless
response: the media type (``application/json`` for events, form-encoded for
the others; else 415), the body limit (default 1 MiB; 413), the signed
timestamp (``X-Slack-Request-Timestamp``, within 5 minutes of the server
clock either way) and ``X-Slack-Signature`` (``v0=`` HMAC-SHA256 of
``v0:<timestamp>:<exact body bytes>``, compared in constant time; 401), then
the payload's shape (400). ``url_verification`` is answered by the channel.
Payloads keep Slack's own field names.

YAML (``channels/slack.yaml``)::

    kind: slack
    signing_secret_env: SLACK_SIGNING_SECRET
    bot_token_env: SLACK_BOT_TOKEN      # needed for reply: true
    api_url: https://slack.com/api/     # default; tests point it at a local fake
    body_limit: 1048576
    events:                             # keyed by event type (app_mention, message...) or "*"
      app_mention: {agent: assistant, reply: true}
    interactions:                       # keyed by payload type (block_actions...) or "*"
      block_actions: {agent: approvals, id: "{{ payload.user.id }}"}
    commands:                           # keyed by command ("/ask") or "*"
      /ask: {agent: assistant, id: "{{ payload.channel_id }}", response: {text: "Thinking..."}}

Rule variables: events get ``payload`` (the envelope) and ``event``;
interactions and commands get ``payload``; all get ``conversation_key(team=,
channel=, thread=)``. Event rules default to the thread's conversation key as
``id`` (``thread_ts`` or the message's ``ts``), ``payload.event_id`` as
dispatch id, and ``{type, eventId, text, user}`` as input. With ``reply:
true`` the answer is posted as a thread reply (``chat.postMessage`` through
the official ``slack_sdk``) to the thread the instance id names.

Python (``channels/slack.py``)::

    from flue_channels import slack_channel

    async def events(payload):
        if payload["type"] == "event_callback" and payload["event"]["type"] == "app_mention":
            event = payload["event"]
            await channel.dispatch(
                "assistant",
                id=channel.conversation_key(team=payload["team_id"], channel=event["channel"],
                                            thread=event.get("thread_ts") or event["ts"]),
                input={"text": event["text"]},
                dispatch_id=payload["event_id"],
                reply=True,
            )

    channel = slack_channel(signing_secret=os.environ["SLACK_SIGNING_SECRET"], events=events,
                            bot_token=os.environ.get("SLACK_BOT_TOKEN"))

Callbacks receive the arguments they name: ``payload``, ``request`` (aiohttp),
``channel``. Returning ``None`` answers an empty 200, an aiohttp response is
sent as is, anything else as JSON.
"""

from __future__ import annotations

import re
import time
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from flue.channels.http import (
    MIB,
    Reject,
    Secret,
    hex_bytes,
    hmac_digest,
    media_type,
    read_body,
    respond,
    signature_matches,
)
from flue.channels.keys import FORMATS, SlackThread
from flue.channels.replies import ReplyFailed, retry_after
from flue.channels.rules import RuleDefaults, Rules, RuleTable, rules_in
from flue_channels.common import (
    Callback,
    ProviderChannel,
    callable_or_none,
    form_record,
    json_object,
    positive_limit,
    secret,
)

DEFAULT_BODY_LIMIT = MIB
MAX_AGE_S = 5 * 60
SLACK_API_URL = "https://slack.com/api/"
TEXT_LIMIT = 39_000  # chat.postMessage truncates past 40,000 characters
_DIGITS = re.compile(r"[0-9]+")
_RETRYABLE_ERRORS = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class SlackChannel(ProviderChannel):
    kind = "slack"
    conversation = FORMATS["slack"]
    what = "Slack thread"

    def __init__(
        self,
        *,
        signing_secret: str | Secret,
        events: Callback | None = None,
        interactions: Callback | None = None,
        commands: Callback | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
        bot_token: str | Secret | None = None,
        api_url: str = SLACK_API_URL,
    ):
        self.signing_secret = secret(signing_secret, "slack_channel() signing_secret")
        self.bot_token = secret(bot_token, "slack_channel() bot_token", required=False)
        self.body_limit = positive_limit(body_limit, "slack_channel() body_limit")
        self.api_url = api_url
        self.events = callable_or_none(events, "the Slack events handler")
        self.interactions = callable_or_none(interactions, "the Slack interactions handler")
        self.commands = callable_or_none(commands, "the Slack commands handler")
        routes = []
        if self.events is not None:
            routes.append(self.route("POST", "/events", self._serve_events))
        if self.interactions is not None:
            routes.append(self.route("POST", "/interactions", self._serve_interactions))
        if self.commands is not None:
            routes.append(self.route("POST", "/commands", self._serve_commands))
        if not routes:
            raise TypeError("slack_channel() requires an events, interactions, or commands handler")
        super().__init__(routes)

    def conversation_key(self, **fields: Any) -> str:
        """``slack:v1:<team>:<channel>:<thread>`` (also accepts team_id/channel_id/thread_ts)."""
        return super().conversation_key(**fields)

    # -- verification ---------------------------------------------------------------------

    async def verify(self, request: web.Request, expected_media_type: str) -> bytes:
        """The exact body of a request Slack signed, or a :class:`Reject`."""
        if media_type(request) != expected_media_type:
            raise Reject(415)
        body = await read_body(request, self.body_limit)
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not _DIGITS.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > MAX_AGE_S:
            raise Reject(401, "stale or missing timestamp")
        given = hex_bytes(signature[3:], 32) if signature.startswith("v0=") else None
        expected = hmac_digest(self.signing_secret.get(), b"v0:" + timestamp.encode() + b":" + body)  # type: ignore[union-attr]
        if not signature_matches(expected, given):
            raise Reject(401, "bad signature")
        return body

    async def _serve_events(self, request: web.Request) -> web.StreamResponse:
        payload = json_object(await self.verify(request, "application/json"))
        kind = payload.get("type")
        if not isinstance(kind, str):
            raise Reject(400)
        if kind == "url_verification":
            challenge = payload.get("challenge")
            if not isinstance(challenge, str):
                raise Reject(400)
            return respond({"challenge": challenge})
        if kind == "event_callback":
            event = payload.get("event")
            if not isinstance(payload.get("event_id"), str) or not isinstance(event, dict) or not isinstance(event.get("type"), str):
                raise Reject(400)
        assert self.events is not None
        return await self.call(self.events, request, payload=payload)

    async def _serve_interactions(self, request: web.Request) -> web.StreamResponse:
        form = form_record(await self.verify(request, "application/x-www-form-urlencoded"))
        raw = form.get("payload")
        if not isinstance(raw, str):  # missing, or given more than once
            raise Reject(400)
        payload = json_object(raw.encode())
        if not isinstance(payload.get("type"), str):
            raise Reject(400)
        assert self.interactions is not None
        return await self.call(self.interactions, request, payload=payload)

    async def _serve_commands(self, request: web.Request) -> web.StreamResponse:
        payload = form_record(await self.verify(request, "application/x-www-form-urlencoded"))
        if not isinstance(payload.get("command"), str):
            raise Reject(400)
        assert self.commands is not None
        return await self.call(self.commands, request, payload=payload)

    # -- replies ----------------------------------------------------------------------------

    def can_reply(self) -> str | None:
        return None if self.bot_token is not None else "no bot token is configured (bot_token_env)"

    async def post_reply(self, ref: SlackThread, text: str) -> dict[str, Any]:
        """Post ``text`` as a reply in the thread (``chat.postMessage``)."""
        from slack_sdk.errors import SlackApiError
        from slack_sdk.web.async_client import AsyncWebClient

        assert self.bot_token is not None
        if len(text) > TEXT_LIMIT:
            text = text[: TEXT_LIMIT - 1] + "…"
        # our own retries (flue.channels.replies) instead of the SDK's, so every attempt is counted
        client = AsyncWebClient(token=self.bot_token.get(), base_url=self.api_url, retry_handlers=[], timeout=15)
        try:
            result = await client.chat_postMessage(channel=ref.channel, thread_ts=ref.thread, text=text)
        except SlackApiError as exc:
            status = exc.response.status_code
            code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            headers = {k.lower(): v for k, v in (exc.response.headers or {}).items()}
            raise ReplyFailed(
                f"Slack answered {status}" + (f" ({code})" if code else ""),
                retryable=status == 429 or status >= 500 or code in _RETRYABLE_ERRORS,
                retry_after=retry_after(headers.get("retry-after")),
            ) from None
        return {"channel": result.get("channel"), "ts": result.get("ts")}


def slack_channel(**options: Any) -> SlackChannel:
    """Create a Slack channel (Flue's ``createSlackChannel``); see the module docstring."""
    return SlackChannel(**options)


# -- the declarative kind ------------------------------------------------------------------------


class SlackOptions(BaseModel):
    """``channels/<name>.yaml`` with ``kind: slack``."""

    model_config = ConfigDict(extra="forbid")
    signing_secret_env: str = Field(min_length=1)
    bot_token_env: str | None = None
    api_url: str = SLACK_API_URL
    body_limit: int = Field(DEFAULT_BODY_LIMIT, gt=0)
    events: dict[str, Rules] | None = None
    interactions: dict[str, Rules] | None = None
    commands: dict[str, Rules] | None = None

    @model_validator(mode="after")
    def _surfaces(self) -> SlackOptions:
        if self.events is None and self.interactions is None and self.commands is None:
            raise ValueError("a Slack channel needs events, interactions or commands (each publishes its route)")
        if any(r.reply for r in rules_in(self.events, self.interactions, self.commands)) and not self.bot_token_env:
            raise ValueError("rules with reply: true need bot_token_env (the env var holding the bot token)")
        return self


EVENT_DEFAULTS = RuleDefaults(
    id="{{ conversation_key(team=payload.team_id, channel=event.channel, thread=event.thread_ts or event.ts) }}",
    input={"type": "slack.{{ event.type }}", "eventId": "{{ payload.event_id }}", "text": "{{ event.text }}",
           "user": "{{ event.user }}"},
    dispatch_id="{{ payload.event_id }}",
)
INTERACTION_DEFAULTS = RuleDefaults(
    input={"type": "slack.{{ payload.type }}", "user": "{{ payload.user.id }}", "actions": "{{ payload.actions }}"},
    dispatch_id="{{ payload.trigger_id }}",
)
COMMAND_DEFAULTS = RuleDefaults(
    input={"type": "slack.command", "command": "{{ payload.command }}", "text": "{{ payload.text }}",
           "user": "{{ payload.user_id }}", "channel": "{{ payload.channel_id }}"},
    dispatch_id="{{ payload.trigger_id }}",
)


def _event_names(data: dict[str, Any]) -> list[str]:
    payload = data["payload"]
    if payload.get("type") == "event_callback":
        return [payload["event"]["type"], "*"]
    return [payload["type"]]  # app_rate_limited and other envelopes: only a rule naming them


#: surface -> (template variables, rule defaults, event names to try, template variables from the callback's data)
SURFACES: dict[str, tuple[tuple[str, ...], RuleDefaults, Any, Any]] = {
    "events": (("payload", "event"), EVENT_DEFAULTS, _event_names,
               lambda payload, **_: {"payload": payload, "event": payload.get("event") or {}}),
    "interactions": (("payload",), INTERACTION_DEFAULTS, lambda d: [d["payload"]["type"], "*"],
                     lambda payload, **_: {"payload": payload}),
    "commands": (("payload",), COMMAND_DEFAULTS, lambda d: [d["payload"]["command"], "*"],
                 lambda payload, **_: {"payload": payload}),
}


def build_slack(definition: Any, options: SlackOptions) -> SlackChannel:
    """The channel of a ``kind: slack`` file: its configured surfaces, each applying its rules."""
    configured = {s: getattr(options, s) for s in SURFACES if getattr(options, s) is not None}
    channel = SlackChannel(
        signing_secret=Secret(env=options.signing_secret_env),
        bot_token=Secret(env=options.bot_token_env) if options.bot_token_env else None,
        api_url=options.api_url,
        body_limit=options.body_limit,
        **{s: _unbound for s in configured},
    )
    for surface, rules in configured.items():
        variables, defaults, events_of, variables_of = SURFACES[surface]
        table = RuleTable(surface, rules, variables=variables + ("conversation_key",), defaults=defaults)
        setattr(channel, surface, channel.rule_callback(table, events_of, variables_of))
    return channel


def _unbound(**_: Any) -> None:  # replaced by the rule callback right after construction
    return None
