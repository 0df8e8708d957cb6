"""The ``github`` channel: one webhook (``POST /webhook``), verified.

Checked in this order, each failure a bodyless response: ``Content-Length``
(not digits: 400; over the body limit, default 25 MiB: 413), the media type
(``application/json`` only: 415), the streamed body (413 past the limit),
``X-Hub-Signature-256`` (``sha256=`` HMAC-SHA256 of the exact bytes, constant
time: 401), a JSON object body (400), ``X-GitHub-Event`` and
``X-GitHub-Delivery`` present (400). ``ping`` is answered with an empty 200 by
the channel itself; every other verified delivery is forwarded.

YAML (``channels/github.yaml``)::

    kind: github
    webhook_secret_env: GITHUB_WEBHOOK_SECRET
    token_env: GITHUB_TOKEN               # needed for reply: true
    api_url: https://api.github.com       # default; GitHub Enterprise or a local fake
    events:                               # "<event>.<action>", "<event>" or "*", most specific first
      issues.opened: {agent: triage, reply: true}
      issue_comment.created:
        agent: triage
        when: "comment.user.type != 'Bot'"
        reply: true

Rule variables: ``payload``, ``delivery`` (``name``, ``id``, ``hook_id``,
``installation_target``), ``event`` (the event name), ``action``,
``repository``, ``issue`` (the issue or pull request), ``comment``, ``sender``
and ``conversation_key(owner=, repo=, issue=)``. Defaults: ``id`` is the
issue's conversation key, the dispatch id the delivery id, and the input
``{type, deliveryId, title, body, sender}``. With ``reply: true`` the answer is
posted as a comment on the issue or pull request (REST ``POST
/repos/{owner}/{repo}/issues/{n}/comments``).

Python: ``github_channel(webhook_secret=..., webhook=fn, token=..., api_url=...)``;
``fn`` receives ``delivery`` (a :class:`GitHubDelivery`), ``request`` and
``channel`` by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
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
    signature_matches,
)
from flue.channels.keys import FORMATS, GitHubIssue
from flue.channels.replies import ReplyFailed, retry_after
from flue.channels.rules import RuleDefaults, Rules, RuleTable, rules_in
from flue_channels.common import (
    Callback,
    ProviderChannel,
    callable_or_none,
    json_object,
    positive_limit,
    secret,
)

DEFAULT_BODY_LIMIT = 25 * MIB
GITHUB_API_URL = "https://api.github.com"
BODY_LIMIT_CHARS = 65_000  # issue comments hold at most 65,536 characters


@dataclass(frozen=True)
class GitHubDelivery:
    """A verified delivery: ``name`` is ``X-GitHub-Event``; ``payload`` GitHub's own JSON."""

    name: str
    payload: dict[str, Any]
    delivery_id: str
    hook_id: str | None = None
    installation_target: dict[str, str] | None = None

    def variables(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.delivery_id, "hook_id": self.hook_id,
                "installation_target": self.installation_target}


class GitHubChannel(ProviderChannel):
    kind = "github"
    conversation = FORMATS["github"]
    what = "GitHub issue"

    def __init__(
        self,
        *,
        webhook_secret: str | Secret,
        webhook: Callback,
        body_limit: int = DEFAULT_BODY_LIMIT,
        token: str | Secret | None = None,
        api_url: str = GITHUB_API_URL,
    ):
        self.webhook_secret = secret(webhook_secret, "github_channel() webhook_secret")
        self.token = secret(token, "github_channel() token", required=False)
        self.body_limit = positive_limit(body_limit, "github_channel() body_limit")
        self.api_url = api_url.rstrip("/")
        if webhook is None:
            raise TypeError("github_channel() requires a webhook handler")
        self.webhook = callable_or_none(webhook, "the GitHub webhook handler")
        super().__init__([self.route("POST", "/webhook", self._serve)])

    def conversation_key(self, **fields: Any) -> str:
        """``github:v1:owner:<owner>:repo:<repo>:issue:<n>`` (also accepts issue_number/issueNumber)."""
        return super().conversation_key(**fields)

    async def verify(self, request: web.Request) -> bytes:
        declared = request.headers.get("Content-Length")  # GitHub's order: the length before the media type
        if declared is not None and (not declared.isdigit() or int(declared) > self.body_limit):
            raise Reject(400 if not declared.isdigit() else 413)
        if media_type(request) != "application/json":
            raise Reject(415)
        body = await read_body(request, self.body_limit)
        header = request.headers.get("X-Hub-Signature-256", "")
        given = hex_bytes(header[7:], 32) if header.startswith("sha256=") else None
        if not signature_matches(hmac_digest(self.webhook_secret.get(), body), given):  # type: ignore[union-attr]
            raise Reject(401)
        return body

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        payload = json_object(await self.verify(request))
        name = request.headers.get("X-GitHub-Event")
        delivery_id = request.headers.get("X-GitHub-Delivery")
        if not name or not delivery_id:
            raise Reject(400)
        if name == "ping":
            return web.Response(status=200)
        target_id = request.headers.get("X-GitHub-Hook-Installation-Target-ID")
        target_type = request.headers.get("X-GitHub-Hook-Installation-Target-Type")
        delivery = GitHubDelivery(
            name=name, payload=payload, delivery_id=delivery_id,
            hook_id=request.headers.get("X-GitHub-Hook-ID") or None,
            installation_target={"id": target_id, "type": target_type} if target_id and target_type else None,
        )
        return await self.call(self.webhook, request, delivery=delivery, payload=payload)  # type: ignore[arg-type]

    # -- replies ----------------------------------------------------------------------------

    def can_reply(self) -> str | None:
        return None if self.token is not None else "no token is configured (token_env)"

    async def post_reply(self, ref: GitHubIssue, text: str) -> dict[str, Any]:
        """Comment ``text`` on the issue or pull request."""
        assert self.token is not None
        if len(text) > BODY_LIMIT_CHARS:
            text = text[: BODY_LIMIT_CHARS - 1] + "…"
        url = f"{self.api_url}/repos/{ref.owner}/{ref.repo}/issues/{ref.issue}/comments"
        headers = {
            "Authorization": f"Bearer {self.token.get()}",
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "flue-channels",
        }
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
            async with session.post(url, json={"body": text}, headers=headers) as resp:
                try:
                    data = await resp.json(content_type=None)
                except ValueError:  # an HTML error page from a proxy
                    data = None
                if resp.status == 201 and isinstance(data, dict):
                    return {"comment": data.get("id"), "url": data.get("html_url")}
                message = data.get("message") if isinstance(data, dict) else None
                limited = resp.status == 429 or (resp.status == 403 and resp.headers.get("X-RateLimit-Remaining") == "0")
                raise ReplyFailed(
                    f"GitHub answered {resp.status}" + (f" ({message})" if isinstance(message, str) else ""),
                    retryable=limited or resp.status >= 500,
                    retry_after=retry_after(resp.headers.get("Retry-After")),
                )


def github_channel(**options: Any) -> GitHubChannel:
    """Create a GitHub channel (Flue's ``createGitHubChannel``); see the module docstring."""
    return GitHubChannel(**options)


# -- the declarative kind ------------------------------------------------------------------------


class GitHubOptions(BaseModel):
    """``channels/<name>.yaml`` with ``kind: github``."""

    model_config = ConfigDict(extra="forbid")
    webhook_secret_env: str = Field(min_length=1)
    token_env: str | None = None
    api_url: str = GITHUB_API_URL
    body_limit: int = Field(DEFAULT_BODY_LIMIT, gt=0)
    events: dict[str, Rules] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _replies(self) -> GitHubOptions:
        if any(r.reply for r in rules_in(self.events)) and not self.token_env:
            raise ValueError("rules with reply: true need token_env (the env var holding a GitHub token)")
        return self


VARIABLES = ("payload", "delivery", "event", "action", "repository", "issue", "comment", "sender", "conversation_key")
DEFAULTS = RuleDefaults(
    id="{{ conversation_key(owner=repository.owner.login, repo=repository.name, issue=issue.number) }}",
    input={
        "type": "github.{{ event }}{{ '.' ~ action if action }}",
        "deliveryId": "{{ delivery.id }}",
        "title": "{{ issue.title }}",
        "body": "{{ comment.body or issue.body }}",
        "sender": "{{ sender.login }}",
    },
    dispatch_id="{{ delivery.id }}",
)


def _variables(delivery: GitHubDelivery, **_: Any) -> dict[str, Any]:
    p = delivery.payload
    action = p.get("action") if isinstance(p.get("action"), str) else None
    return {
        "payload": p, "delivery": delivery.variables(), "event": delivery.name, "action": action,
        "repository": p.get("repository") or {}, "issue": p.get("issue") or p.get("pull_request") or {},
        "comment": p.get("comment") or {}, "sender": p.get("sender") or {},
    }


def _event_names(data: dict[str, Any]) -> list[str]:
    delivery: GitHubDelivery = data["delivery"]
    action = delivery.payload.get("action")
    return ([f"{delivery.name}.{action}"] if isinstance(action, str) else []) + [delivery.name, "*"]


def build_github(definition: Any, options: GitHubOptions) -> GitHubChannel:
    """The channel of a ``kind: github`` file: its webhook, applying its rules."""
    channel = GitHubChannel(
        webhook_secret=Secret(env=options.webhook_secret_env),
        token=Secret(env=options.token_env) if options.token_env else None,
        api_url=options.api_url,
        body_limit=options.body_limit,
        webhook=lambda **_: None,  # replaced below, once the channel exists
    )
    table = RuleTable("events", options.events, variables=VARIABLES, defaults=DEFAULTS)
    channel.webhook = channel.rule_callback(table, _event_names, _variables)
    return channel
