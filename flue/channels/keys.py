"""Conversation keys: agent instance ids that name a provider destination.

A channel dispatches an event to the agent instance of its conversation (a
Slack thread, a GitHub issue), so one thread is one durable agent instance,
and code that only has the instance id can get back to the destination::

    >>> key = conversation_key("slack", team="T1", channel="C2", thread="1700000000.000100")
    >>> key
    'slack:v1:T1:C2:1700000000.000100'
    >>> parse_conversation_key(key)
    SlackThread(provider='slack', team='T1', channel='C2', thread='1700000000.000100')

Formats (the same strings as Flue's ``@flue/slack`` and ``@flue/github``):

- ``slack:v1:<team>:<channel>:<thread ts>``
- ``github:v1:owner:<owner>:repo:<repo>:issue:<number>`` (pull requests use their issue number)

Parts are percent-encoded like JavaScript's ``encodeURIComponent``; parsing
accepts only canonical keys (an exact round trip). Field names accept Flue's
spellings too (``teamId``/``team_id``, ``issueNumber``/``issue_number``).
A key identifies a destination; it is not an authorization capability.

Channel kinds for other providers bring a format on the channels they build,
``Channel(conversation=MyFormat(), ...)`` (any object with ``provider``,
``format(**fields) -> str`` and ``parse(id) -> ConversationRef``); agents of a
project's instances then see those keys parsed too (:mod:`flue.instance`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable
from urllib.parse import quote, unquote

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator

# encodeURIComponent leaves these unescaped (besides letters and digits)
_URI_SAFE = "-_.!~*'()"


class InvalidConversationKey(ValueError):
    """An instance id that is not a canonical conversation key of the format asked for."""


class InvalidConversationRef(ValueError):
    """Fields that cannot make a conversation key (empty, surrounding whitespace, a bad number)."""


class ConversationRef(BaseModel):
    """A parsed conversation key; ``provider`` says which kind of destination it is."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")
    provider: str

    def key(self) -> str:
        return FORMATS[self.provider].format(**self.model_dump(exclude={"provider"}))


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not value or value.strip() != value:
        raise ValueError("must be a non-empty string without surrounding whitespace")
    return value


class SlackThread(ConversationRef):
    """A Slack thread: its workspace (team), channel and thread timestamp."""

    provider: Literal["slack"] = "slack"
    team: str = Field(validation_alias=AliasChoices("team", "team_id", "teamId"))
    channel: str = Field(validation_alias=AliasChoices("channel", "channel_id", "channelId"))
    thread: str = Field(validation_alias=AliasChoices("thread", "thread_ts", "threadTs"))

    @field_validator("team", "channel", "thread", mode="before")
    @classmethod
    def _identifiers(cls, v: Any) -> str:
        return _identifier(v)


class GitHubIssue(ConversationRef):
    """A GitHub issue or pull request (pull requests use their issue number)."""

    provider: Literal["github"] = "github"
    owner: str
    repo: str
    issue: int = Field(validation_alias=AliasChoices("issue", "issue_number", "issueNumber", "number"))

    @field_validator("owner", "repo", mode="before")
    @classmethod
    def _identifiers(cls, v: Any) -> str:
        return _identifier(v)

    @field_validator("issue", mode="before")
    @classmethod
    def _positive(cls, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError("must be a positive integer")
        return v


@runtime_checkable
class ConversationFormat(Protocol):
    @property
    def provider(self) -> str: ...

    def format(self, **fields: Any) -> str: ...

    def parse(self, id: str) -> ConversationRef: ...


class _Format:
    """A ``<provider>:v1:...`` format: a regex over the encoded parts plus the ref model."""

    provider: ClassVar[str]
    ref: ClassVar[type[ConversationRef]]
    pattern: ClassVar[re.Pattern[str]]

    def make(self, **fields: Any) -> ConversationRef:
        fields.pop("provider", None)
        try:
            return self.ref.model_validate(fields)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'ref'}: {e['msg']}" for e in exc.errors())
            raise InvalidConversationRef(f"invalid {self.provider} conversation: {problems}") from None

    def format(self, **fields: Any) -> str:
        return self.encode(self.make(**fields))

    def encode(self, ref: Any) -> str:
        raise NotImplementedError

    def parse(self, id: str) -> ConversationRef:
        match = self.pattern.fullmatch(id) if isinstance(id, str) else None
        if match is None:
            raise InvalidConversationKey(f"not a {self.provider} conversation key: {id!r}")
        try:
            ref = self.make(**{k: self.decode(k, v) for k, v in match.groupdict().items()})
        except (InvalidConversationRef, UnicodeDecodeError):
            raise InvalidConversationKey(f"not a {self.provider} conversation key: {id!r}") from None
        if self.encode(ref) != id:  # canonical keys only
            raise InvalidConversationKey(f"not a canonical {self.provider} conversation key: {id!r}")
        return ref

    def decode(self, name: str, value: str) -> Any:
        return unquote(value, errors="strict")


def _enc(value: str) -> str:
    return quote(value, safe=_URI_SAFE)


class SlackFormat(_Format):
    provider = "slack"
    ref = SlackThread
    pattern = re.compile(r"slack:v1:(?P<team>[^:]+):(?P<channel>[^:]+):(?P<thread>[^:]+)")

    def encode(self, ref: SlackThread) -> str:
        return f"slack:v1:{_enc(ref.team)}:{_enc(ref.channel)}:{_enc(ref.thread)}"


class GitHubFormat(_Format):
    provider = "github"
    ref = GitHubIssue
    pattern = re.compile(r"github:v1:owner:(?P<owner>[^:]+):repo:(?P<repo>[^:]+):issue:(?P<issue>[1-9]\d*)")

    def encode(self, ref: GitHubIssue) -> str:
        return f"github:v1:owner:{_enc(ref.owner)}:repo:{_enc(ref.repo)}:issue:{ref.issue}"

    def decode(self, name: str, value: str) -> Any:
        return int(value) if name == "issue" else super().decode(name, value)


#: The built-in formats by provider.
FORMATS: dict[str, ConversationFormat] = {"slack": SlackFormat(), "github": GitHubFormat()}


def conversation_key(provider: str, /, **fields: Any) -> str:
    """The conversation key of a destination, e.g. ``conversation_key("github", owner=..., repo=..., issue=7)``."""
    fmt = FORMATS.get(provider)
    if fmt is None:
        raise InvalidConversationRef(f"unknown conversation provider {provider!r} (known: {', '.join(FORMATS)})")
    return fmt.format(**fields)


def parse_conversation_key(
    id: str, provider: str | None = None, *, formats: Iterable[ConversationFormat] = ()
) -> ConversationRef:
    """Parse a conversation key (of ``provider`` only, when given); raise :class:`InvalidConversationKey`."""
    candidates = {**FORMATS, **{f.provider: f for f in formats}}
    prefix = id.split(":", 1)[0] if isinstance(id, str) else ""
    fmt = candidates.get(provider or prefix)
    if fmt is None or (provider is not None and prefix != provider):
        raise InvalidConversationKey(f"not a {provider or 'known'} conversation key: {id!r}")
    return fmt.parse(id)


def find_conversation(id: str, *, formats: Iterable[ConversationFormat] = ()) -> ConversationRef | None:
    """The parsed conversation key of an instance id, or None when it is not one."""
    try:
        return parse_conversation_key(id, formats=formats)
    except InvalidConversationKey:
        return None
