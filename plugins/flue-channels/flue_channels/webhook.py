"""The ``webhook`` channel: any provider that signs its requests with an HMAC.

Checked in this order, each failure a bodyless response: the body limit
(default 1 MiB; 413), a bearer token when one is configured
(``Authorization: Bearer <token>``, constant time; 401), the signed
timestamp when a ``timestamp_header`` is configured (unix seconds within
``tolerance``, default 300 s; 401) and the signature (401): the HMAC
(``algorithm``: sha256, sha1 or sha512) of ``signed_content`` over the exact
body bytes, encoded as ``hex`` or ``base64``, after ``signature_prefix``, in
``signature_header``, compared in constant time.

YAML (``channels/<name>.yaml``)::

    kind: webhook
    secret_env: ACME_WEBHOOK_SECRET      # the HMAC key; or bearer_env for an unsigned,
    bearer_env: ACME_TOKEN               #   bearer-protected endpoint (one of them is required)
    signature_header: X-Acme-Signature   # default X-Signature
    signature_prefix: "sha256="          # default none
    algorithm: sha256                    # sha256 | sha1 | sha512
    encoding: hex                        # hex | base64
    timestamp_header: X-Acme-Timestamp   # optional
    tolerance: 300                       # seconds, with timestamp_header
    signed_content: "{timestamp}.{body}" # default "{body}" ("{timestamp}.{body}" with a timestamp); {id} too
    id_header: X-Acme-Delivery           # the delivery id: the default dispatch id
    event_header: X-Acme-Event           # or event_field: type (a dotted path into a JSON body)
    path: /webhook                       # the route (POST), default /webhook
    events:                              # keyed by the event name, or "*"
      "*": {agent: intake, id: "{{ payload.account }}"}

The body is parsed by its type: JSON, a form (a record), else text. Rule
variables: ``payload``, ``headers`` (lowercased, without the signature,
``authorization`` and ``cookie``), ``delivery_id`` and ``event``. Defaults: the
input is the payload, the dispatch id the delivery id. Webhooks cannot reply.

Python: ``webhook_channel(secret=..., handler=fn, ...)`` with the same options;
``fn`` receives ``payload``, ``body`` (bytes), ``headers``, ``delivery_id``,
``request`` and ``channel`` by name.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flue.channels.http import MIB, Reject, Secret, hmac_digest, media_type, read_body, signature_matches
from flue.channels.rules import RuleDefaults, Rules, RuleTable, rules_in
from flue_channels.common import (
    Callback,
    ProviderChannel,
    callable_or_none,
    form_record,
    positive_limit,
    secret,
)

DEFAULT_BODY_LIMIT = MIB
_DIGITS = re.compile(r"[0-9]+")
_PLACEHOLDER = re.compile(r"\{(\w*)\}")
_HIDDEN_HEADERS = {"authorization", "cookie", "proxy-authorization"}
Algorithm = Literal["sha256", "sha1", "sha512"]
Encoding = Literal["hex", "base64"]


def signed_content_problem(template: str) -> str | None:
    names = _PLACEHOLDER.findall(template)
    if names.count("body") != 1:
        return "signed_content must contain {body} exactly once"
    unknown = sorted(set(names) - {"body", "timestamp", "id"})
    return f"signed_content may use {{body}}, {{timestamp}} and {{id}}, not {', '.join(unknown)}" if unknown else None


class WebhookChannel(ProviderChannel):
    kind = "webhook"
    conversation = None
    what = "webhook"

    def __init__(
        self,
        *,
        handler: Callback,
        secret: str | Secret | None = None,
        bearer_token: str | Secret | None = None,
        path: str = "/webhook",
        signature_header: str = "X-Signature",
        signature_prefix: str = "",
        algorithm: Algorithm = "sha256",
        encoding: Encoding = "hex",
        timestamp_header: str | None = None,
        tolerance: int = 300,
        signed_content: str | None = None,
        id_header: str | None = None,
        body_limit: int = DEFAULT_BODY_LIMIT,
    ):
        self.secret = _secret(secret, "webhook_channel() secret")
        self.bearer = _secret(bearer_token, "webhook_channel() bearer_token")
        if self.secret is None and self.bearer is None:
            raise TypeError("webhook_channel() needs a secret (signed requests) or a bearer_token")
        if algorithm not in ("sha256", "sha1", "sha512"):
            raise TypeError(f"webhook_channel() algorithm must be sha256, sha1 or sha512, not {algorithm!r}")
        if encoding not in ("hex", "base64"):
            raise TypeError(f"webhook_channel() encoding must be hex or base64, not {encoding!r}")
        self.signed_content = signed_content or ("{timestamp}.{body}" if timestamp_header else "{body}")
        if problem := signed_content_problem(self.signed_content):
            raise TypeError(f"webhook_channel() {problem}")
        self.signature_header, self.signature_prefix = signature_header, signature_prefix
        self.algorithm, self.encoding = algorithm, encoding
        self.timestamp_header, self.tolerance = timestamp_header, tolerance
        self.id_header = id_header
        self.body_limit = positive_limit(body_limit, "webhook_channel() body_limit")
        self.handler = callable_or_none(handler, "the webhook handler")
        if self.handler is None:
            raise TypeError("webhook_channel() requires a handler")
        super().__init__([self.route("POST", path, self._serve)])

    async def verify(self, request: web.Request) -> bytes:
        body = await read_body(request, self.body_limit)
        if self.bearer is not None:
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {self.bearer.get()}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                raise Reject(401)
        if self.secret is None:
            return body
        timestamp = ""
        if self.timestamp_header:
            timestamp = request.headers.get(self.timestamp_header, "")
            if not _DIGITS.fullmatch(timestamp) or abs(time.time() - int(timestamp)) > self.tolerance:
                raise Reject(401)
        header = request.headers.get(self.signature_header, "")
        given_sig = self._decode(header[len(self.signature_prefix):]) if header.startswith(self.signature_prefix) else None
        before, _, after = self.signed_content.partition("{body}")
        fields = {"timestamp": timestamp, "id": request.headers.get(self.id_header or "", "")}
        message = before.format(**fields).encode() + body + after.format(**fields).encode()
        if not signature_matches(hmac_digest(self.secret.get(), message, self.algorithm), given_sig):
            raise Reject(401)
        return body

    def _decode(self, text: str) -> bytes | None:
        try:
            return bytes.fromhex(text) if self.encoding == "hex" else base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            return None

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        body = await self.verify(request)
        kind = media_type(request)
        payload: Any
        if kind == "application/json" or kind.endswith("+json"):
            try:
                payload = json.loads(body.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise Reject(400) from None
        elif kind == "application/x-www-form-urlencoded":
            payload = form_record(body)
        else:
            payload = body.decode("utf-8", errors="replace")
        hidden = _HIDDEN_HEADERS | {self.signature_header.lower()}
        headers = {k.lower(): v for k, v in request.headers.items() if k.lower() not in hidden}
        delivery_id = request.headers.get(self.id_header) if self.id_header else None
        assert self.handler is not None
        return await self.call(self.handler, request, payload=payload, body=body, headers=headers,
                               delivery_id=delivery_id)


def _secret(value: Any, what: str) -> Secret | None:
    return secret(value, what, required=False)


def webhook_channel(**options: Any) -> WebhookChannel:
    """Create a generic signed-webhook channel; see the module docstring."""
    return WebhookChannel(**options)


# -- the declarative kind ------------------------------------------------------------------------


class WebhookOptions(BaseModel):
    """``channels/<name>.yaml`` with ``kind: webhook``."""

    model_config = ConfigDict(extra="forbid")
    secret_env: str | None = None
    bearer_env: str | None = None
    signature_header: str = "X-Signature"
    signature_prefix: str = ""
    algorithm: Algorithm = "sha256"
    encoding: Encoding = "hex"
    timestamp_header: str | None = None
    tolerance: int = Field(300, gt=0)
    signed_content: str | None = None
    id_header: str | None = None
    event_header: str | None = None
    event_field: str | None = None
    path: str = "/webhook"
    body_limit: int = Field(DEFAULT_BODY_LIMIT, gt=0)
    events: dict[str, Rules] = Field(default_factory=dict)

    @field_validator("signed_content")
    @classmethod
    def _content(cls, v: str | None) -> str | None:
        if v is not None and (problem := signed_content_problem(v)):
            raise ValueError(problem)
        return v

    @model_validator(mode="after")
    def _auth(self) -> WebhookOptions:
        if not self.secret_env and not self.bearer_env:
            raise ValueError("a webhook channel needs secret_env (signed requests) or bearer_env (a bearer token)")
        if self.event_header and self.event_field:
            raise ValueError("use event_header or event_field, not both")
        if any(r.reply for r in rules_in(self.events)):
            raise ValueError("webhook channels cannot reply (reply: true needs a provider such as slack or github)")
        return self


VARIABLES = ("payload", "headers", "delivery_id", "event")
DEFAULTS = RuleDefaults(input="{{ payload }}", dispatch_id="{{ delivery_id }}")


def _field(payload: Any, path: str) -> Any:
    for part in path.split("."):
        payload = payload.get(part) if isinstance(payload, dict) else None
    return payload


def build_webhook(definition: Any, options: WebhookOptions) -> WebhookChannel:
    """The channel of a ``kind: webhook`` file: its route, applying its rules."""

    def event_of(payload: Any, headers: dict[str, str]) -> str | None:
        if options.event_header:
            return headers.get(options.event_header.lower())
        value = _field(payload, options.event_field) if options.event_field else None
        return value if isinstance(value, str) else None

    def variables(payload: Any, headers: dict[str, str], delivery_id: str | None, **_: Any) -> dict[str, Any]:
        return {"payload": payload, "headers": headers, "delivery_id": delivery_id, "event": event_of(payload, headers)}

    def event_names(data: dict[str, Any]) -> list[str]:
        event = event_of(data["payload"], data["headers"])
        return ([event] if event else []) + ["*"]

    channel = WebhookChannel(
        handler=lambda **_: None,  # replaced below, once the channel exists
        secret=Secret(env=options.secret_env) if options.secret_env else None,
        bearer_token=Secret(env=options.bearer_env) if options.bearer_env else None,
        path=options.path, signature_header=options.signature_header, signature_prefix=options.signature_prefix,
        algorithm=options.algorithm, encoding=options.encoding, timestamp_header=options.timestamp_header,
        tolerance=options.tolerance, signed_content=options.signed_content, id_header=options.id_header,
        body_limit=options.body_limit,
    )
    table = RuleTable("events", options.events, variables=VARIABLES, defaults=DEFAULTS)
    channel.handler = channel.rule_callback(table, event_names, variables)
    return channel
