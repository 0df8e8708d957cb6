"""The Durable Streams read path: GET/HEAD on an event stream held by an ``EventStreamStore``.

Agent routes (``GET /agents/<name>/<id>``) and run routes (``GET /runs/<runId>``)
call :func:`read_stream` with the stream
path and the 404 they want for a stream that does not exist yet. The protocol
(https://github.com/durable-streams/durable-streams, PROTOCOL.md):

- ``offset``: ``-1`` (or absent) = from the start, ``now`` = the tail,
  ``<readSeq>_<seq>`` = after that position. Anything else, an empty or
  repeated ``offset``, or an offset past the tail is a 400 ``invalid_request``.
- catch-up (no ``live``): 200, ``application/json`` array of the events after
  the offset (at most ``batch_limit``), ``Stream-Next-Offset``,
  ``Stream-Up-To-Date: true`` when the response reaches the tail,
  ``Stream-Closed: true`` when it reaches the tail of a closed stream, an
  ``ETag`` (``If-None-Match`` -> 304). ``offset=now``: empty array, no ETag,
  ``Cache-Control: no-store``.
- ``live=long-poll`` (needs ``offset``): 200 as soon as there is data, 204 with
  ``Stream-Up-To-Date`` when ``long_poll_timeout`` passes without any, 204 with
  ``Stream-Closed: true`` at once at the tail of a closed stream.
- ``live=sse`` (needs ``offset``): ``text/event-stream``; every batch is one
  ``event: data`` frame (a JSON array) followed by one ``event: control`` frame
  ``{"streamNextOffset", "streamCursor", "upToDate"?}``; the tail of a closed
  stream ends the response with ``{"streamNextOffset", "streamClosed": true,
  "upToDate": true}`` (no cursor). The server ends a connection after
  ``sse_max_duration`` (60 s, so CDNs can collapse); clients reconnect with the
  last ``streamNextOffset``.
- ``tail=N`` (ASCII digits, 1 <= N < 2**63, with ``offset`` absent or ``-1``): start N events before
  the tail instead of at the beginning; combines with every mode.
- ``cursor``: echo of ``Stream-Cursor`` (digits; anything else is a 400); live responses carry a cursor that is
  the current 20-second interval since 2024-10-09, or strictly greater than
  the client's when the client is already there (protocol 8.1).

Live readers wake on the store's ``subscribe`` listener and read the store only
then: an idle reader costs nothing but its connection. Stores whose listener
only covers appends made through them (not other processes') say how often
readers must re-read anyway (``live_poll_interval``, see
:func:`live_poll_interval`); ``poll_interval`` overrides it. The built-in
SQLite store (:mod:`flue.persistence.sqlite_watch`) and the PostgreSQL plugin
(``LISTEN``/``NOTIFY``) report every process's appends. One timer per event
loop ends the readers whose client went away.

Every response carries ``X-Content-Type-Options: nosniff`` and
``Cross-Origin-Resource-Policy: cross-origin``. Catch-up responses that can no
longer change (a closed stream's tail, a partial batch) are cacheable for 60 s;
responses at the tail of an open stream must be revalidated (``no-cache`` +
ETag); ``cache_scope`` is ``private`` by default because Flue streams carry
one user's agent activity.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from aiohttp import web

from flue.persistence.base import (
    OFFSET_BEFORE_START,
    EventStreamStore,
    ReadResult,
    format_offset,
    parse_offset,
)
from flue.server import sse
from flue.server.errors import HttpError, invalid_request, method_not_allowed
from flue.strict_json import query_int

LiveMode = Literal["long-poll", "sse"]
LIVE_MODES: tuple[str, ...] = ("long-poll", "sse")

DEFAULT_LONG_POLL_TIMEOUT = 30.0
DEFAULT_POLL_INTERVAL = 0.25
DEFAULT_SSE_MAX_DURATION = 60.0
DEFAULT_SSE_KEEPALIVE = 15.0
DEFAULT_BATCH_LIMIT = 1000

SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "cross-origin"}

H_NEXT_OFFSET = "Stream-Next-Offset"
H_UP_TO_DATE = "Stream-Up-To-Date"
H_CLOSED = "Stream-Closed"
H_CURSOR = "Stream-Cursor"
H_SSE_ENCODING = "Stream-SSE-Data-Encoding"

# -- body codecs ----------------------------------------------------------------


class StreamCodec(Protocol):
    """How stored events become a response body.

    Flue's streams are JSON (:data:`JSON_EVENTS`); the conformance app adds
    byte-stream codecs so the suite's ``text/plain`` cases exercise the same
    read path.
    """

    @property
    def content_type(self) -> str:
        """``Content-Type`` of catch-up/long-poll bodies and HEAD."""
        ...

    @property
    def sse_encoding(self) -> str | None:
        """``Stream-SSE-Data-Encoding`` for SSE (``"base64"`` for binary streams) or None."""
        ...

    def body(self, events: list[dict[str, Any]]) -> bytes:
        """The catch-up body for these events (for none: the type's empty body, ``[]`` for JSON)."""
        ...

    def sse_data(self, events: list[dict[str, Any]]) -> str:
        """The payload of one SSE ``data`` frame carrying these (one or more) events."""
        ...


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class JsonEventsCodec:
    """Each stored event is one JSON message; bodies and SSE frames are JSON arrays of them."""

    content_type: str = "application/json"
    sse_encoding: str | None = None

    def body(self, events: list[dict[str, Any]]) -> bytes:
        return dump_json(events).encode("utf-8")

    def sse_data(self, events: list[dict[str, Any]]) -> str:
        return dump_json(events)


JSON_EVENTS = JsonEventsCodec()

# -- cursors (protocol 8.1) -------------------------------------------------------------

CURSOR_EPOCH = datetime(2024, 10, 9, tzinfo=UTC).timestamp()
CURSOR_INTERVAL_S = 20
_JITTER_S = (1, 3600)


def response_cursor(client_cursor: str | None, *, now: float | None = None) -> str:
    """The cursor for a live response: the current interval number, or, when the client
    already echoes that interval (or a later one), its cursor plus random jitter, so
    cursors only ever move forward and cached empty responses cannot loop."""
    current = int(((time.time() if now is None else now) - CURSOR_EPOCH) // CURSOR_INTERVAL_S)
    client = query_int(client_cursor)
    if client is not None:
        if client >= current:
            jitter_s = random.randint(*_JITTER_S)
            return str(client + max(1, math.ceil(jitter_s / CURSOR_INTERVAL_S)))
    return str(current)


# -- the query ---------------------------------------------------------------------


@dataclass(frozen=True)
class ReadQuery:
    offset: str | None
    live: LiveMode | None
    tail: int | None
    cursor: str | None


def parse_read_query(request: web.Request) -> ReadQuery:
    """Validate the protocol's query parameters (unknown ones are ignored). Raises 400s."""
    query = request.rel_url.query

    def single(name: str) -> str | None:
        values = query.getall(name, [])
        if len(values) > 1:
            raise invalid_request(f"The {name} query parameter was given more than once.")
        return values[0] if values else None

    offset = single("offset")
    if offset is not None and offset not in (OFFSET_BEFORE_START, "now"):
        try:
            parse_offset(offset)
        except ValueError:
            raise invalid_request(
                f"Invalid offset {_shown(offset)}.",
                'Use -1, now, or a Stream-Next-Offset value returned by the server.',
            ) from None
    live = single("live")
    if live is not None and live not in LIVE_MODES:
        raise invalid_request(f"Invalid live mode {live!r}.", "Use live=long-poll or live=sse.")
    if live is not None and offset is None:
        raise invalid_request(f"live={live} needs an offset.", "Pass offset=-1, offset=now or a saved offset.")
    tail_raw = single("tail")
    tail: int | None = None
    if tail_raw is not None:
        tail = query_int(tail_raw)
        if tail is None or tail < 1:
            raise invalid_request(
                f"Invalid tail {_shown(tail_raw)}.", "tail must be an integer from 1 to 9223372036854775807."
            )
        if offset not in (None, OFFSET_BEFORE_START):
            raise invalid_request("tail can only be used with offset=-1.")
    cursor = single("cursor")
    if cursor is not None and query_int(cursor) is None:
        raise invalid_request(
            f"Invalid cursor {_shown(cursor)}.", "Echo the Stream-Cursor value the server sent, or omit cursor."
        )
    return ReadQuery(offset=offset, live=live, tail=tail, cursor=cursor)  # type: ignore[arg-type]


def _shown(value: str) -> str:
    """A query value quoted for an error message, cut short (it is the caller's own input)."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


# -- waiting for appends ------------------------------------------------------------------


def live_poll_interval(store: EventStreamStore) -> float | None:
    """How often a live reader of ``store`` must re-read on its own: the store's
    ``live_poll_interval`` (``None``: ``subscribe`` reports every append, from every process),
    :data:`DEFAULT_POLL_INTERVAL` for a store that does not say (its ``subscribe`` may only
    cover appends made through it)."""
    return getattr(store, "live_poll_interval", DEFAULT_POLL_INTERVAL)


class _Watch:
    """Wakes a live reader on appends to ``path`` (the store's ``subscribe``), when its client
    goes away (:class:`_DisconnectSweep`), and, with a ``poll_interval``, at least that often,
    for appends the store cannot report."""

    def __init__(self, store: EventStreamStore, path: str, poll_interval: float | None, request: web.Request) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self._poll_interval = poll_interval
        self.request = request
        # subscribe before the first read so that an append between read and wait is not lost
        self._unsubscribe = store.subscribe(path, self._wake)
        self._sweep = _DisconnectSweep.of(self._loop)
        self._sweep.add(self)

    def _wake(self, _path: str) -> None:
        # the store may call from a worker thread; Event is not thread-safe
        self._loop.call_soon_threadsafe(self._event.set)

    def wake(self) -> None:
        self._event.set()

    async def wait(self, at_most: float) -> bool:
        """Wait for a wake-up, ``poll_interval`` or ``at_most`` seconds, whichever is first.
        True when the reader should read again: it was woken, or it polls anyway."""
        timeout = at_most if self._poll_interval is None else min(at_most, self._poll_interval)
        woken = True
        try:
            await asyncio.wait_for(self._event.wait(), max(0.0, timeout))
        except TimeoutError:
            woken = False
        self._event.clear()
        return woken or self._poll_interval is not None

    def close(self) -> None:
        self._unsubscribe()
        self._sweep.discard(self)


class _DisconnectSweep:
    """One timer per event loop that wakes the live readers whose client has gone away, so that
    a reader that is never woken by an append still ends (and unsubscribes) soon after its
    client left, without each reader waking up on its own."""

    INTERVAL_S = 1.0
    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _DisconnectSweep] = weakref.WeakKeyDictionary()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._watches: set[_Watch] = set()
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _DisconnectSweep:
        sweep = cls._by_loop.get(loop)
        if sweep is None:
            sweep = cls._by_loop[loop] = cls(loop)
        return sweep

    def add(self, watch: _Watch) -> None:
        self._watches.add(watch)
        if self._timer is None:
            self._timer = self._loop.call_later(self.INTERVAL_S, self._tick)

    def discard(self, watch: _Watch) -> None:
        self._watches.discard(watch)

    def _tick(self) -> None:
        self._timer = None
        for watch in self._watches:
            if _disconnected(watch.request):
                watch.wake()
        if self._watches:
            self._timer = self._loop.call_later(self.INTERVAL_S, self._tick)


def _disconnected(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# -- responses -------------------------------------------------------------------------------


def _etag(path: str, created_at: str, start: int, end: int, closed: bool) -> str:
    # the stream's identity (path + creation time, so a recreated stream never matches),
    # the range, and closure, which changes the headers of a tail read
    ident = hashlib.sha256(f"{path}\0{created_at}".encode()).hexdigest()[:16]
    return f'"{ident}:{start}:{end}{":c" if closed else ""}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


@dataclass
class _Reader:
    request: web.Request
    store: EventStreamStore
    path: str
    codec: StreamCodec
    batch_limit: int
    cache_scope: str
    extra_headers: Mapping[str, str]

    def headers(self, **more: str) -> dict[str, str]:
        return {**self.extra_headers, **SECURITY_HEADERS, **more}

    async def read(self, offset: str) -> ReadResult:
        return await self.store.read_events(self.path, offset, limit=self.batch_limit)

    def data_response(self, result: ReadResult, *, start: int, created_at: str, cursor: str | None) -> web.Response:
        """200 with the events of ``result`` (catch-up or long-poll), or 304 if the client has it."""
        end = parse_offset(result.next_offset)
        closed = result.closed and result.up_to_date
        etag = _etag(self.path, created_at, start, end, closed)
        immutable = closed or not result.up_to_date
        cache = f"{self.cache_scope}, " + ("max-age=60, stale-while-revalidate=300" if immutable else "no-cache")
        headers = self.headers(**{H_NEXT_OFFSET: result.next_offset, "ETag": etag, "Cache-Control": cache})
        if cursor is not None:
            headers[H_CURSOR] = cursor
        if result.up_to_date:
            headers[H_UP_TO_DATE] = "true"
        if closed:
            headers[H_CLOSED] = "true"
        if _matches(self.request.headers.get("If-None-Match"), etag):
            return web.Response(status=304, headers=headers)
        headers["Content-Type"] = self.codec.content_type
        return web.Response(status=200, body=self.codec.body(result.events), headers=headers)

    def no_content(self, next_offset: str, *, closed: bool, cursor: str) -> web.Response:
        headers = self.headers(
            **{H_NEXT_OFFSET: next_offset, H_UP_TO_DATE: "true", H_CURSOR: cursor, "Cache-Control": "no-store"}
        )
        if closed:
            headers[H_CLOSED] = "true"
        return web.Response(status=204, headers=headers)


async def read_stream(
    request: web.Request,
    store: EventStreamStore,
    path: str,
    *,
    not_found: HttpError,
    long_poll_timeout: float = DEFAULT_LONG_POLL_TIMEOUT,
    poll_interval: float | None = None,
    sse_max_duration: float = DEFAULT_SSE_MAX_DURATION,
    sse_keepalive: float = DEFAULT_SSE_KEEPALIVE,
    batch_limit: int = DEFAULT_BATCH_LIMIT,
    cache_scope: Literal["private", "public"] = "private",
    codec: StreamCodec = JSON_EVENTS,
    extra_headers: Mapping[str, str] | None = None,
) -> web.StreamResponse:
    """Serve a Durable Streams GET or HEAD of the stream at ``path``.

    ``not_found`` is raised (with the security headers added) when the stream
    does not exist; the caller chooses it (``stream_not_found``,
    ``run_not_found``...). Other errors are raised as 400/405 ``HttpError`` for
    the error middleware to render. ``extra_headers`` go on every success
    response.
    """
    if request.method not in ("GET", "HEAD"):
        raise method_not_allowed(request.method, ["GET", "HEAD"])
    query = parse_read_query(request) if request.method == "GET" else None
    meta = await store.get_stream_meta(path)
    if meta is None:
        raise HttpError(
            not_found.status, not_found.type, not_found.message, not_found.details, dev=not_found.dev,
            meta=not_found.meta, headers={**not_found.headers, **SECURITY_HEADERS},
        )
    reader = _Reader(request, store, path, codec, batch_limit, cache_scope, extra_headers or {})

    if query is None:  # HEAD: the tail's metadata, as a full catch-up read would end; never cached
        tail = parse_offset(meta.next_offset)
        headers = reader.headers(**{
            "Content-Type": codec.content_type, H_NEXT_OFFSET: meta.next_offset, H_UP_TO_DATE: "true",
            "Cache-Control": "no-store", "ETag": _etag(path, meta.created_at, 0, tail, meta.closed),
        })
        if meta.closed:
            headers[H_CLOSED] = "true"
        return web.Response(status=200, headers=headers)

    tail_seq = parse_offset(meta.next_offset)
    if query.offset == "now":
        start = tail_seq
    elif query.offset in (None, OFFSET_BEFORE_START):
        start = max(0, tail_seq - query.tail) if query.tail else 0
    else:
        start = parse_offset(query.offset)
        if start > tail_seq:
            raise invalid_request(
                "The offset is past the end of the stream.",
                "Use a Stream-Next-Offset value returned by this server.",
            )
    offset = OFFSET_BEFORE_START if start == 0 else format_offset(start)

    if query.live is None:
        if query.offset == "now":
            headers = reader.headers(
                **{
                    "Content-Type": codec.content_type,
                    H_NEXT_OFFSET: meta.next_offset,
                    H_UP_TO_DATE: "true",
                    "Cache-Control": "no-store",
                }
            )
            if meta.closed:
                headers[H_CLOSED] = "true"
            return web.Response(status=200, body=codec.body([]), headers=headers)
        result = await reader.read(offset)
        return reader.data_response(result, start=start, created_at=meta.created_at, cursor=None)

    cursor = response_cursor(query.cursor)
    watch = _Watch(store, path, live_poll_interval(store) if poll_interval is None else poll_interval, request)
    try:
        if query.live == "long-poll":
            return await _long_poll(reader, watch, offset, start, meta.created_at, cursor, long_poll_timeout)
        # nothing left to send on a closed stream: say so up front too, not only in the final control frame
        closed = meta.closed and start == tail_seq
        return await _sse(reader, watch, offset, cursor, sse_max_duration, sse_keepalive, closed=closed)
    finally:
        watch.close()


async def _long_poll(
    reader: _Reader, watch: _Watch, offset: str, start: int, created_at: str, cursor: str, wait_s: float
) -> web.Response:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    result = await reader.read(offset)
    while True:
        if result.events:
            return reader.data_response(result, start=start, created_at=created_at, cursor=cursor)
        if result.closed:
            return reader.no_content(result.next_offset, closed=True, cursor=cursor)
        remaining = deadline - loop.time()
        if remaining <= 0:
            return reader.no_content(result.next_offset, closed=False, cursor=cursor)
        if _disconnected(reader.request):
            # nobody to answer; the seeds' "long-poll abort" status, security headers only
            return web.Response(status=499, headers=SECURITY_HEADERS)
        if await watch.wait(remaining):
            result = await reader.read(offset)


def _control(next_offset: str, cursor: str, *, up_to_date: bool, closed: bool) -> bytes:
    control: dict[str, Any] = {"streamNextOffset": next_offset}
    if closed:
        # the last word: no cursor, there is nothing left to collapse onto
        control["streamClosed"] = True
        control["upToDate"] = True
    else:
        control["streamCursor"] = cursor
        if up_to_date:
            control["upToDate"] = True
    return sse.frame(dump_json(control), event="control")


async def _sse(
    reader: _Reader, watch: _Watch, offset: str, cursor: str, max_duration: float, keepalive: float, *, closed: bool
) -> web.StreamResponse:
    codec = reader.codec
    headers = reader.headers(**sse.SSE_HEADERS)
    if closed:
        headers[H_CLOSED] = "true"
    if codec.sse_encoding:
        headers[H_SSE_ENCODING] = codec.sse_encoding
    response = web.StreamResponse(status=200, headers=headers)
    await response.prepare(reader.request)
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + max_duration
    last_write = loop.time()
    announced = False  # the first control frame goes out even when there is no data
    read_again = True
    try:
        while True:
            if read_again:
                result = await reader.read(offset)
                closed = result.closed and result.up_to_date
                if result.events or closed or not announced:
                    out = b""
                    if result.events:
                        out += sse.frame(codec.sse_data(result.events), event="data")
                    out += _control(result.next_offset, cursor, up_to_date=result.up_to_date, closed=closed)
                    await response.write(out)
                    offset, announced, last_write = result.next_offset, True, loop.time()
                    if closed:
                        break
                    if not result.up_to_date:
                        continue  # more history to send before waiting
            now = loop.time()
            if now >= ends_at or _disconnected(reader.request):
                break
            if now - last_write >= keepalive:
                await response.write(sse.comment())
                last_write = now
            read_again = await watch.wait(min(ends_at - now, keepalive - (now - last_write)))
        await response.write_eof()
    except ConnectionResetError:
        pass  # the client went away; nothing to clean up beyond the watch
    return response

