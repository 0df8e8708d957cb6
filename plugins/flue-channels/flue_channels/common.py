"""What the Slack, GitHub and webhook channels share: callbacks, dispatch, replies, rules."""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web

from flue.authoring.channels import Channel, ChannelRoute
from flue.channels.http import Reject, Secret, call_with, handle, respond, runtime_of, track
from flue.channels.keys import ConversationRef, find_conversation
from flue.channels.replies import start_reply
from flue.channels.rules import RuleError, RuleTable, apply_rule, scheduled_reply
from flue.persistence.submissions import DispatchConflictError, DispatchReceipt, Submission

log = logging.getLogger("flue.channels")

#: The request a channel callback is answering (so ``channel.dispatch`` finds its runtime).
current_request: contextvars.ContextVar[web.Request | None] = contextvars.ContextVar("flue_channel_request", default=None)

Callback = Callable[..., Any]


def secret(value: str | Secret | None, what: str, *, required: bool = True) -> Secret | None:
    """A secret given as a string (code) or a :class:`Secret` (env var)."""
    if isinstance(value, Secret):
        return value
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty string")
    return Secret(value=value)


def positive_limit(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise TypeError(f"{what} must be a positive integer (bytes)")
    return value


def callable_or_none(fn: Any, what: str) -> Callback | None:
    if fn is not None and not callable(fn):
        raise TypeError(f"{what} must be a function")
    return fn


def json_object(body: bytes) -> dict[str, Any]:
    """A UTF-8 JSON object, else a bodyless 400."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Reject(400, "not JSON") from None
    if not isinstance(value, dict):
        raise Reject(400, "not a JSON object")
    return value


def form_record(body: bytes) -> dict[str, str | list[str]]:
    """A URL-encoded form as a record (repeated keys become lists), else a bodyless 400."""
    try:
        pairs = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise Reject(400, "not UTF-8") from None
    return {k: v[0] if len(v) == 1 else v for k, v in pairs.items()}


class ProviderChannel(Channel):
    """A channel of a provider with conversation keys and (optionally) replies."""

    what = "conversation"  # where replies go, for log messages ("Slack thread")

    def __init__(self, routes: list[ChannelRoute]):
        super().__init__(routes=routes, kind=self.kind, conversation=self.conversation)

    def conversation_key(self, **fields: Any) -> str:
        assert self.conversation is not None
        return self.conversation.format(**fields)

    def parse_conversation_key(self, id: str) -> ConversationRef:
        assert self.conversation is not None
        return self.conversation.parse(id)

    def route(self, method: str, path: str, fn: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> ChannelRoute:
        return ChannelRoute(method, path, handle(fn))

    async def call(self, fn: Callback, request: web.Request, **data: Any) -> web.StreamResponse:
        """Run an application callback for a verified request; its result becomes the response."""
        token = current_request.set(request)
        try:
            return respond(await call_with(fn, request=request, channel=self, **data))
        finally:
            current_request.reset(token)

    # -- dispatch and replies ---------------------------------------------------------

    async def dispatch(
        self, agent: str, *, id: str, input: Any, dispatch_id: str | None = None, reply: bool = False
    ) -> DispatchReceipt:
        """Admit ``input`` to agent instance ``id`` (idempotent by ``dispatch_id``); with ``reply``,
        post the agent's answer to the conversation ``id`` names once it settles."""
        from flue.runtime.runtime import Runtime

        request = current_request.get()
        runtime = runtime_of(request) if request is not None else Runtime.current()
        sub, created = await runtime.coordinator.admit(agent, id, input, kind="dispatch", dispatch_id=dispatch_id)
        if reply and created:
            self.start_reply(sub, request)
        return sub.receipt()

    async def post_reply(self, ref: Any, text: str) -> dict[str, Any]:
        raise NotImplementedError(f"the {self.kind} channel cannot reply")

    def can_reply(self) -> str | None:
        """Why replies cannot be posted (None when they can)."""
        return f"the {self.kind} channel cannot reply"

    def start_reply(self, sub: Submission, request: web.Request | None) -> None:
        from flue.runtime.instances import split_instance
        from flue.runtime.runtime import Runtime

        runtime = runtime_of(request) if request is not None else Runtime.current()
        keep = (lambda task: track(request, task)) if request is not None else None
        _agent, instance_id = split_instance(sub.instance)
        ref = find_conversation(instance_id, formats=[self.conversation] if self.conversation else [])
        problem = self.can_reply()
        if problem is None and (ref is None or ref.provider != self.kind):
            problem = f"the instance id {instance_id!r} is not a {self.kind} conversation key"
        if problem is not None:
            async def explain(text: str) -> dict[str, Any]:
                from flue.channels.replies import ReplyFailed

                raise ReplyFailed(problem, retryable=False)

            start_reply(runtime, sub, explain, what=self.what, keep=keep)
            return

        async def post(text: str) -> dict[str, Any]:
            return await self.post_reply(ref, text)

        start_reply(runtime, sub, post, what=self.what, keep=keep)

    # -- declarative rules ------------------------------------------------------------

    def rule_callback(
        self,
        table: RuleTable,
        events_of: Callable[[Any], list[str]],
        variables_of: Callable[..., dict[str, Any]],
    ) -> Callback:
        """A callback applying ``table`` to each verified event (see :mod:`flue.channels.rules`)."""
        table_bindings = table.bindings
        self.rules.extend(table_bindings)

        async def callback(request: web.Request, **data: Any) -> Any:
            from flue.server.errors import HttpError

            name = request.match_info.get("name", self.kind)
            variables = {**variables_of(**data), "conversation_key": self.conversation_key}
            try:
                binding = table.match(events_of(data), variables)
                if binding is None:
                    return None
                applied = await apply_rule(binding, variables, runtime=runtime_of(request), channel=name)
            except RuleError as exc:
                log.warning("channel %r: nothing dispatched: %s", name, exc)
                return None
            except DispatchConflictError:
                raise HttpError(409, "dispatch_conflict", "This event was already admitted with different input.",
                                "A provider event id is dispatched once; its rendered input must not change.") from None
            except Exception as exc:  # a `when` that fails on this event's data
                if type(exc).__module__.startswith("jinja2"):
                    log.warning("channel %r: nothing dispatched: %s: %s", name, type(exc).__name__, exc)
                    return None
                raise
            scheduled_reply(applied, lambda sub: self.start_reply(sub, request))
            return applied.response

        return callback
