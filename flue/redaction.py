"""Known secrets, replaced by ``[redacted]`` wherever data leaves the process.

A loaded project knows a set of secret *values* (:func:`secret_values`):

- the values of the environment variables it names for secrets: every key
  ending in ``_env`` anywhere in ``flue.yaml`` (``api_key_env`` of providers,
  ``bearer_env`` of ``admin:``, ``playground:``, plugin options...), the
  ``http.auth.bearer_env`` of agents and workflows, and the top-level ``*_env``
  options of channel files (``signing_secret_env``, ``bot_token_env``,
  ``secret_env``, ``token_env``...);
- the variables the native model clients read for catalog providers
  (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``... :mod:`flue.models.endpoints`);
- literal ``api_key`` values, and every value of a provider's ``headers`` and
  of an agent's MCP server ``headers`` (after ``${NAME}`` interpolation; a
  value such as ``Bearer <token>`` also counts its token alone);
- what was :func:`declare`-d: every :class:`flue.channels.http.Secret` does,
  and a plugin may declare its own.

Values shorter than :data:`MIN_LENGTH` (8) characters are never scrubbed: a
short "secret" (``test``, ``admin``, a port) is also a common word or number,
and replacing it everywhere would mangle events without protecting anything.

**Where it applies** (one call each): event serialization (``FlueEvent.wire``:
streams, sockets, ``flue run``) and what observers receive (:func:`observed`),
workflow run records and results, agent results of ``?wait=result``, HTTP error
envelopes (``ErrorEnvelope.wire``), socket error frames, every log record of
the process (:func:`install_log_scrubbing`: a record factory, so child
loggers, handlers added later and ``logging.lastResort`` are all covered), and
``flue info``. Session histories are not scrubbed: the model must see what a
tool really returned.

**Cost.** The set lives in one compiled alternation pattern. With no known
secret :func:`scrub` returns at once; otherwise it searches each string once
and copies only the containers on the way to a match (unchanged input comes
back as the same object). ``benchmarks/redaction.py`` measures it per event.

The set is process-wide (a process serves one project): :func:`use_project`
replaces it (``Runtime`` calls it on open and on every ``flue dev`` reload,
which also re-reads ``.env``); :func:`refresh` re-reads the environment for
the current project. A secret streamed in pieces (one ``text_delta`` per few
characters) is not caught in the deltas; the whole text in ``message_end``,
``turn`` and ``operation`` is.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flue.project import Project

REDACTED = "[redacted]"
MIN_LENGTH = 8

# Process-wide state: the current project (to re-read the environment), what was declared,
# and the compiled pattern of the values (None: nothing to scrub).
_project: Project | None = None
_declared_env: set[str] = set()
_declared_values: set[str] = set()
_matcher: _Matcher | None = None


# -- what is secret ---------------------------------------------------------------------


def _env_keys(value: Any, into: set[str]) -> None:
    """Collect the values of every ``*_env`` key of a nested mapping (env var names)."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("_env") and isinstance(item, str) and item:
                into.add(item)
            else:
                _env_keys(item, into)
    elif isinstance(value, list | tuple):
        for item in value:
            _env_keys(item, into)


def _header_values(headers: Mapping[str, Any], into: set[str]) -> None:
    """A header's whole value, and its token alone (``Bearer <token>``, ``token <t>``)."""
    from flue.config import MissingEnvVar, interpolate_env

    for raw in headers.values():
        if not isinstance(raw, str):
            continue
        try:
            value = interpolate_env(raw)
        except MissingEnvVar:
            continue
        into.add(value)
        into.update(value.split())


def secret_env_names(project: Project) -> set[str]:
    """The environment variables whose values are the project's secrets."""
    from flue.models.endpoints import ENDPOINTS

    names: set[str] = set(_declared_env)
    _env_keys(project.config.model_dump(), names)
    for definition in [*project.agents.values(), *project.workflows.values()]:
        auth = getattr(getattr(definition, "http", None), "auth", None)
        if auth is not None and auth.bearer_env:
            names.add(auth.bearer_env)
    for channel in project.channels.values():
        _env_keys(channel.options, names)
    for endpoint in ENDPOINTS.values():
        names.update(endpoint.key_env)
    return names


def secret_values(project: Project | None, environ: Mapping[str, str] | None = None) -> set[str]:
    """Every secret value the project knows (at least :data:`MIN_LENGTH` characters)."""
    env = os.environ if environ is None else environ
    values: set[str] = set(_declared_values)
    values.update(env[n] for n in _declared_env if env.get(n))
    if project is not None:
        values.update(env[n] for n in secret_env_names(project) if env.get(n))
        for provider in project.config.providers.values():
            if provider.api_key:
                values.add(provider.api_key)
            _header_values(provider.headers, values)
        for agent in project.agents.values():
            for server in agent.mcp.values():
                _header_values(server.headers, values)
    return {v for v in values if len(v) >= MIN_LENGTH and v != REDACTED}


def _trie_regex(values: Iterable[str]) -> str:
    """One alternation of ``values`` shaped as a trie (``tok(?:1|2)`` for ``tok1|tok2``): the
    regex engine then tries one branch per position instead of every value, and the greedy
    ``(?:...)?`` of a value that continues into a longer one matches the longer one whole."""
    trie: dict[str, Any] = {}
    for value in values:
        node = trie
        for ch in value:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        chain = []
        while "" not in node and len(node) == 1:  # a run without branches: no recursion (long keys)
            ch, node = next(iter(node.items()))
            chain.append(re.escape(ch))
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch]
        if not branches:
            return "".join(chain)
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if "" in node:
            body = f"(?:{body})?" if len(branches) == 1 else body + "?"
        return "".join(chain) + body

    return build(trie)


class _Matcher:
    """The compiled secrets: one pattern, the shortest length (shorter strings cannot hold one)
    and the strings already found clean (ids and names recur in every event of a context)."""

    __slots__ = ("pattern", "shortest", "clean", "json_safe")
    CACHE = 4096  # clean strings remembered (each at most CACHED_LENGTH characters)
    CACHED_LENGTH = 256

    def __init__(self, values: set[str]):
        self.pattern = re.compile(_trie_regex(values))
        self.shortest = min(map(len, values))
        self.clean: dict[str, None] = {}
        # JSON text spells such secrets verbatim (no quote, backslash or control character to escape)
        self.json_safe = not any(ch in '"\\' or ch < " " for value in values for ch in value)

    def text(self, value: str) -> str:
        if len(value) < self.shortest or value in self.clean:
            return value
        if self.pattern.search(value) is None:
            if len(value) <= self.CACHED_LENGTH:
                if len(self.clean) >= self.CACHE:
                    self.clean.clear()
                self.clean[value] = None
            return value
        return self.pattern.sub(REDACTED, value)


def _compile(values: Iterable[str]) -> _Matcher | None:
    found = set(values)
    return _Matcher(found) if found else None


def use_project(project: Project | None) -> Scrubber:
    """Make ``project``'s secrets the ones scrubbed in this process (and scrub logs);
    returns a :class:`Scrubber` for one-off use (``flue info``)."""
    global _project
    _project = project
    refresh()
    install_log_scrubbing()
    return Scrubber()


def refresh() -> None:
    """Re-read the secret values (the environment may have changed: ``.env`` reloaded)."""
    global _matcher
    _matcher = _compile(secret_values(_project))


def declare(*, value: str | None = None, env: str | None = None) -> None:
    """Declare a secret of this process: a literal ``value``, or the variable ``env`` holding one
    (read now and at each :func:`refresh`). For plugins whose secrets Flue cannot see in
    ``flue.yaml``; channels' ``Secret`` objects declare themselves."""
    new = (env is not None and env not in _declared_env) or (value is not None and value not in _declared_values)
    if env:
        _declared_env.add(env)
    if value:
        _declared_values.add(value)
    if new:
        refresh()


def active() -> bool:
    """Whether any secret is known (so :func:`scrub` may change something)."""
    return _matcher is not None


# -- scrubbing ----------------------------------------------------------------------------


def scrub(value: Any) -> Any:
    """``value`` (a string or JSON-like data) with every known secret replaced by
    ``[redacted]``; the very same object when nothing was found."""
    matcher = _matcher
    if matcher is None:
        return value
    return _scrub(value, matcher)


def _scrub(value: Any, m: _Matcher) -> Any:
    kind = type(value)
    if kind is str:
        return m.text(value)
    if kind is dict:
        out: dict[Any, Any] | None = None
        for i, (key, item) in enumerate(value.items()):
            new_key = m.text(key) if type(key) is str else key
            kind = type(item)
            new = m.text(item) if kind is str else _scrub(item, m) if kind in _NESTED else item
            if out is None and (new is not item or new_key is not key):
                out = dict(islice(value.items(), i))  # copied only from the first change on
            if out is not None:
                out[new_key] = new
        return value if out is None else out
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for i, item in enumerate(value):
            kind_ = type(item)
            new = m.text(item) if kind_ is str else _scrub(item, m) if kind_ in _NESTED else item
            if new is not item and items is None:
                items = list(value[:i])
            if items is not None:
                items.append(new)
        return value if items is None else (items if kind is list else tuple(items))
    if isinstance(value, str):  # a str subclass (an enum member...)
        return m.text(str(value))
    return value


_NESTED = frozenset({dict, list, tuple})


def scrub_encoded(value: dict[str, Any], text: str | None) -> tuple[dict[str, Any], bool]:
    """``scrub(value)``, told ``text``, the JSON text of ``value`` (None if there is none): one
    search of the text stands in for a walk of every string when no secret needs escaping in
    JSON. Also returns whether ``value`` came back unchanged (so ``text`` is still its text)."""
    matcher = _matcher
    if matcher is None:
        return value, True
    if text is not None and matcher.json_safe:
        if matcher.pattern.search(text) is None:
            return value, True
    out = _scrub(value, matcher)
    return out, out is value


def _contains(value: Any, text: str) -> bool:
    """Whether ``text`` occurs in a string of ``value`` (keys included)."""
    kind = type(value)
    if kind is str:
        return text in value
    if kind is dict:
        for key, item in value.items():
            kind = type(item)
            if (kind is str and text in item) or (kind in _NESTED and _contains(item, text)):
                return True
            if type(key) is str and text in key:
                return True
        return False
    if kind is list or kind is tuple:
        return any(_contains(v, text) for v in value if type(v) is str or type(v) in _NESTED)
    return False


def observed(event: Any) -> Any:
    """What an observer receives for ``event``: the event itself, or, when its wire form had a
    secret scrubbed out, a copy of the event built from that scrubbed form."""
    if _matcher is None:
        return event
    wire = event.wire()
    if getattr(wire, "json", None) is not None or not _contains(wire, REDACTED):  # encoded unchanged: clean
        return event
    return type(event).model_validate(wire)


class Scrubber:
    """:func:`scrub` as an object (``use_project(project).scrub(doc)``)."""

    @staticmethod
    def scrub(value: Any) -> Any:
        return scrub(value)


# -- logs ------------------------------------------------------------------------------------


def _scrub_record(record: logging.LogRecord, matcher: _Matcher) -> None:
    pattern = matcher.pattern
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: the handler reports it as usual
        return
    if pattern.search(message):
        record.msg, record.args = pattern.sub(REDACTED, message), None
    if record.exc_info and not record.exc_text:
        text = logging.Formatter().formatException(record.exc_info)
        if pattern.search(text):
            record.exc_text = pattern.sub(REDACTED, text)  # formatters use exc_text when it is set
    if record.stack_info and pattern.search(record.stack_info):
        record.stack_info = pattern.sub(REDACTED, record.stack_info)


def install_log_scrubbing() -> None:
    """Scrub every log record of the process as it is made (idempotent). A record factory rather
    than a filter: a logger's filter never sees its children's records, and a handler's misses
    handlers added later (``caplog``, an embedding app's, ``logging.lastResort``)."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "flue_scrubbing", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        matcher = _matcher
        if matcher is not None:
            _scrub_record(record, matcher)
        return record

    factory.flue_scrubbing = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
