"""A test-only Durable Streams server over Flue's read path, for the official conformance suite.

**Not part of the Flue server.** Flue's streams are read-only over HTTP (the
runtime appends events internally), so the normal app never mounts this and
nothing in it is reachable from ``flue dev``/``flue start``. The official
suite (``@durable-streams/server-conformance-tests``) must create and append
to streams before it can test reads, so this separate app factory adds the
write side the suite needs around :func:`flue.server.streams.read_stream`:

- ``PUT /v1/stream/{name}`` create (idempotent with the same config, 409
  otherwise), optional initial body, ``Stream-TTL``/``Stream-Expires-At``
  recorded and reported on HEAD (not enforced), ``Stream-Closed: true``
  creates a closed stream;
- ``POST`` append (JSON streams: one message, or each element of a top-level
  array; empty arrays and invalid JSON are 400), ``Stream-Seq`` ordering,
  ``Stream-Closed: true`` closes (after appending the body, if any);
- ``DELETE`` forgets the stream (the store has no delete: a recreated stream
  gets a fresh store path, so old data never shows through);
- ``GET``/``HEAD`` go through ``read_stream`` unchanged;
- CORS for browsers and preflights.

Every stream is kept in one ``EventStreamStore`` under ``conformance/``;
non-JSON streams store each append as ``{"b": <base64>}`` and are rendered by
a byte codec, so the suite's ``text/plain`` and binary cases drive the same
offset, long-poll, SSE, ETag and closure logic as Flue's JSON event streams.
Idempotent producers, forks and TTL expiry are not implemented: they are
write-side features Flue does not serve.

Run it with ``python -m flue.testing.stream_conformance --port 4437`` (in-memory
SQLite store); ``tests/test_stream_conformance.py`` does that for CI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aiohttp import web

from flue.persistence.base import EventStreamStore, StreamClosed
from flue.server.errors import HttpError, error_middleware, invalid_request
from flue.server.streams import (
    H_CLOSED,
    H_NEXT_OFFSET,
    SECURITY_HEADERS,
    StreamCodec,
    dump_json,
    read_stream,
)

PREFIX = "conformance"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TTL = re.compile(r"0|[1-9][0-9]*")

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": (
        "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Stream-TTL, "
        "Stream-Expires-At, Stream-SSE-Data-Encoding, ETag, Location, Content-Type"
    ),
}
CORS_ALLOW_METHODS = "GET, HEAD, POST, PUT, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = "Content-Type, If-None-Match, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed"


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


# -- codecs for the suite's stream types -------------------------------------------


@dataclass(frozen=True)
class JsonValuesCodec:
    """JSON streams of arbitrary values; each stored event is ``{"v": value}``."""

    content_type: str
    sse_encoding: str | None = None

    def body(self, events: list[dict[str, Any]]) -> bytes:
        return dump_json([e["v"] for e in events]).encode("utf-8")

    def sse_data(self, events: list[dict[str, Any]]) -> str:
        return dump_json([e["v"] for e in events])


@dataclass(frozen=True)
class BytesCodec:
    """Byte streams; each stored event is one append ``{"b": <base64>}``, bodies concatenate them.

    SSE carries ``text/*`` as text and anything else base64-encoded (announced
    with ``Stream-SSE-Data-Encoding: base64``), one padded base64 string per frame.
    """

    content_type: str

    @property
    def sse_encoding(self) -> str | None:
        return None if media_type(self.content_type).startswith("text/") else "base64"

    def body(self, events: list[dict[str, Any]]) -> bytes:
        return b"".join(base64.b64decode(e["b"]) for e in events)

    def sse_data(self, events: list[dict[str, Any]]) -> str:
        data = self.body(events)
        if self.sse_encoding:
            return base64.b64encode(data).decode("ascii")
        return data.decode("utf-8", errors="replace")


def codec_for(content_type: str) -> StreamCodec:
    if media_type(content_type) == "application/json":
        return JsonValuesCodec(content_type)
    return BytesCodec(content_type)


def to_events(content_type: str, body: bytes, *, allow_empty_array: bool) -> list[dict[str, Any]]:
    """The stored events for one PUT/POST body (JSON mode flattens one array level)."""
    if media_type(content_type) != "application/json":
        return [{"b": base64.b64encode(body).decode("ascii")}]
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise invalid_request("The body is not valid JSON.") from None
    if isinstance(value, list):
        if not value and not allow_empty_array:
            raise invalid_request("An empty JSON array appends nothing.")
        return [{"v": v} for v in value]
    return [{"v": value}]


# -- the registry of suite streams -------------------------------------------------


@dataclass
class Entry:
    store_path: str
    content_type: str
    ttl: str | None
    expires_at: str | None
    last_seq: str | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def same_config(self, content_type: str, ttl: str | None, expires_at: str | None) -> bool:
        return (media_type(self.content_type), self.ttl, self.expires_at) == (media_type(content_type), ttl, expires_at)

    def metadata_headers(self) -> dict[str, str]:
        headers = {}
        if self.ttl is not None:
            headers["Stream-TTL"] = self.ttl
        if self.expires_at is not None:
            headers["Stream-Expires-At"] = self.expires_at
        return headers


class ConformanceServer:
    def __init__(self, store: EventStreamStore, *, read_options: dict[str, Any]) -> None:
        self.store = store
        self.read_options = read_options
        self.entries: dict[str, Entry] = {}
        self.generation = 0

    def _not_found(self, name: str) -> HttpError:
        return HttpError(
            404, "stream_not_found", f'Stream "{name}" does not exist.', headers=SECURITY_HEADERS
        )

    def _entry(self, request: web.Request) -> tuple[str, Entry | None]:
        name = request.match_info["name"]
        return name, self.entries.get(name)

    async def read(self, request: web.Request) -> web.StreamResponse:
        name, entry = self._entry(request)
        if entry is None:
            raise self._not_found(name)
        return await read_stream(
            request,
            self.store,
            entry.store_path,
            not_found=self._not_found(name),
            codec=codec_for(entry.content_type),
            extra_headers=entry.metadata_headers(),
            **self.read_options,
        )

    async def create(self, request: web.Request) -> web.Response:
        name, entry = self._entry(request)
        content_type = request.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
        ttl = request.headers.get("Stream-TTL")
        expires_at = request.headers.get("Stream-Expires-At")
        if ttl is not None and not _TTL.fullmatch(ttl):
            raise invalid_request("Stream-TTL must be a non-negative integer without leading zeros.")
        if expires_at is not None:
            try:
                datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
            except ValueError:
                raise invalid_request("Stream-Expires-At must be an RFC 3339 timestamp.") from None
        if ttl is not None and expires_at is not None:
            raise invalid_request("Give Stream-TTL or Stream-Expires-At, not both.")
        closing = request.headers.get(H_CLOSED, "").lower() == "true"
        body = await request.read()
        if entry is not None:
            if not entry.same_config(content_type, ttl, expires_at):
                raise HttpError(409, "conflict", f'Stream "{name}" exists with a different configuration.')
            meta = await self.store.get_stream_meta(entry.store_path)
            assert meta is not None
            return self._created(200, request, entry, meta.next_offset, meta.closed)
        events = to_events(content_type, body, allow_empty_array=True) if body else []
        self.generation += 1
        entry = Entry(f"{PREFIX}/{self.generation}/{name}", content_type, ttl, expires_at)
        meta = await self.store.create_stream(entry.store_path)
        next_offset = meta.next_offset
        if events:
            next_offset = await self.store.append_events(entry.store_path, events)
        if closing:
            await self.store.close_stream(entry.store_path)
        self.entries[name] = entry
        return self._created(201, request, entry, next_offset, closing)

    def _created(self, status: int, request: web.Request, entry: Entry, next_offset: str, closed: bool) -> web.Response:
        headers = {"Content-Type": entry.content_type, H_NEXT_OFFSET: next_offset}
        if status == 201:
            headers["Location"] = str(request.url.with_query(None))
        if closed:
            headers[H_CLOSED] = "true"
        return web.Response(status=status, headers=headers)

    async def append(self, request: web.Request) -> web.Response:
        name, entry = self._entry(request)
        if entry is None:
            raise self._not_found(name)
        closing = request.headers.get(H_CLOSED, "").lower() == "true"
        body = await request.read()
        async with entry.lock:  # Stream-Seq check and append are one step per stream
            meta = await self.store.get_stream_meta(entry.store_path)
            assert meta is not None
            if not body:
                if not closing:
                    raise invalid_request("An append needs a body.")
                await self.store.close_stream(entry.store_path)
                return web.Response(status=204, headers={H_NEXT_OFFSET: meta.next_offset, H_CLOSED: "true"})
            content_type = request.headers.get("Content-Type")
            if not content_type:
                raise invalid_request("An append needs a Content-Type.")
            if media_type(content_type) != media_type(entry.content_type):
                raise HttpError(409, "conflict", "Content-Type does not match the stream's.")
            if meta.closed:
                raise HttpError(409, "stream_closed", f'Stream "{name}" is closed.',
                                headers={H_CLOSED: "true", H_NEXT_OFFSET: meta.next_offset})
            seq = request.headers.get("Stream-Seq")
            if seq is not None and entry.last_seq is not None and seq <= entry.last_seq:
                raise HttpError(409, "sequence_conflict", "Stream-Seq must increase.")
            events = to_events(entry.content_type, body, allow_empty_array=False)
            try:
                next_offset = await self.store.append_events(entry.store_path, events)
            except StreamClosed:
                raise HttpError(409, "stream_closed", f'Stream "{name}" is closed.', headers={H_CLOSED: "true"}) from None
            if seq is not None:
                entry.last_seq = seq
            headers = {H_NEXT_OFFSET: next_offset}
            if closing:
                await self.store.close_stream(entry.store_path)
                headers[H_CLOSED] = "true"
            return web.Response(status=204, headers=headers)

    async def delete(self, request: web.Request) -> web.Response:
        name, entry = self._entry(request)
        if entry is None:
            raise self._not_found(name)
        del self.entries[name]
        return web.Response(status=204)

    async def preflight(self, request: web.Request) -> web.Response:
        return web.Response(
            status=204,
            headers={
                "Access-Control-Allow-Methods": CORS_ALLOW_METHODS,
                "Access-Control-Allow-Headers": request.headers.get("Access-Control-Request-Headers")
                or CORS_ALLOW_HEADERS,
                "Access-Control-Max-Age": "600",
            },
        )


async def _cors_and_security(request: web.Request, response: web.StreamResponse) -> None:
    # on_response_prepare reaches every response, SSE and error envelopes included
    for key, value in {**SECURITY_HEADERS, **CORS_HEADERS}.items():
        response.headers.setdefault(key, value)


def make_conformance_app(
    store: EventStreamStore,
    *,
    long_poll_timeout: float = 2.0,
    poll_interval: float | None = None,
    sse_max_duration: float = 60.0,
) -> web.Application:
    """The suite's server: ``/v1/stream/{name}`` over ``store``. Test-only; see the module docstring."""
    server = ConformanceServer(
        store,
        read_options={
            "long_poll_timeout": long_poll_timeout,
            "poll_interval": poll_interval,
            "sse_max_duration": sse_max_duration,
        },
    )
    app = web.Application(middlewares=[error_middleware])
    app.on_response_prepare.append(_cors_and_security)
    route = "/v1/stream/{name:.+}"
    app.router.add_get(route, server.read)  # with HEAD
    app.router.add_route("PUT", route, server.create)
    app.router.add_route("POST", route, server.append)
    app.router.add_route("DELETE", route, server.delete)
    app.router.add_route("OPTIONS", route, server.preflight)
    return app


async def _serve(host: str, port: int, long_poll_timeout: float) -> None:
    from flue.persistence.sqlite import SQLiteAdapter  # in-memory; imported here, the app takes any store

    adapter = SQLiteAdapter()
    await adapter.migrate()
    stores = await adapter.connect()
    runner = web.AppRunner(make_conformance_app(stores.streams, long_poll_timeout=long_poll_timeout))
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"conformance server listening on http://{host}:{port}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await adapter.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m flue.testing.stream_conformance",
        description="Test-only Durable Streams server for the conformance suite (in-memory SQLite store).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4437)
    parser.add_argument("--long-poll-timeout", type=float, default=2.0, help="seconds (default 2)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.long_poll_timeout))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
