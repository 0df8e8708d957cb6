"""HTTP plumbing of the native model clients: one pooled aiohttp session, SSE, retries, errors.

**The session.** A process has one ``aiohttp.ClientSession`` for all model
calls (connections are pooled and kept alive across calls and providers). It
is created on first use on the running event loop and closed by
:func:`close_client_session`, which ``Runtime.close()`` calls. Code that runs
its own loop without a runtime (scripts, tests) needs nothing: the session
is also closed when the loop shuts its async generators down, as
``asyncio.run`` and aiohttp's ``run_app`` do. A call on another loop (each
test's own loop) gets a fresh session.

**Server-Sent Events** are parsed from the raw byte chunks, a batch of
``(event, data)`` pairs per network read, without a per-line ``await``.

**Retries.** :class:`RetryPolicy`: 429, 5xx (and Anthropic's 529) and failed
connections are retried with exponential backoff, honouring ``Retry-After`` /
``retry-after-ms``; a wait longer than ``max_retry_after`` is not waited for.

**Errors** become the typed errors of :mod:`flue.harness.errors` with Flue's
own message (status, provider, model, what to do). The provider's body goes
to the ``flue.models`` log only (with the API key masked), never into the
message: providers echo request data, keys included.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import random
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from flue.harness.errors import (
    ModelAuthError,
    ModelCallError,
    ModelConnectionError,
    ModelRateLimitError,
    ModelUnavailableError,
)

log = logging.getLogger("flue.models")

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
# Reasoning models may think for minutes before the first byte of a streamed answer.
TIMEOUT = aiohttp.ClientTimeout(total=None, connect=30, sock_connect=30, sock_read=600)
MAX_ERROR_BODY = 4096  # bytes of an error response read for the log


# -- the shared session ------------------------------------------------------------------


class _Shared:
    """The session of one event loop, and the async generator whose finally closes it."""

    __slots__ = ("session", "guard")

    def __init__(self, session: aiohttp.ClientSession, guard: Any):
        self.session = session
        self.guard = guard


# Sessions cannot cross event loops: one per loop (a process normally has one), forgotten with it.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Shared] = weakref.WeakKeyDictionary()


async def _close_at_loop_shutdown(session: aiohttp.ClientSession) -> AsyncIterator[None]:
    # The loop closes every suspended async generator in shutdown_asyncgens() (asyncio.run,
    # aiohttp.web.run_app, pytest-asyncio): this one's finally then closes the session.
    try:
        yield
    finally:
        if not session.closed:
            await session.close()


async def client_session() -> aiohttp.ClientSession:
    """The process's model-call session, created on the running loop on first use."""
    loop = asyncio.get_running_loop()
    shared = _SESSIONS.get(loop)
    if shared is not None and not shared.session.closed:
        return shared.session
    connector = aiohttp.TCPConnector(limit=512, keepalive_timeout=60, ttl_dns_cache=300)
    # No trust_env: aiohttp would then read the proxy settings and ~/.netrc in a thread on every
    # request. Proxies are looked up once per endpoint instead (proxy_for).
    session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT, auto_decompress=True)
    guard = _close_at_loop_shutdown(session)
    await guard.__anext__()
    _SESSIONS[loop] = _Shared(session, guard)
    return session


async def close_client_session() -> None:
    """Close this loop's session (its pooled connections); the next call opens a new one."""
    shared = _SESSIONS.pop(asyncio.get_running_loop(), None)
    if shared is not None:
        await shared.guard.aclose()


_PROXY_VARS = ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY",
               "no_proxy", "NO_PROXY", "REQUEST_METHOD")
_PROXIES: dict[tuple[str, tuple[str | None, ...]], str | None] = {}


def proxy_for(url: str) -> str | None:
    """The proxy for ``url`` from ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (as the SDKs honour them).

    Remembered per URL and proxy settings: ``getproxies()`` scans the whole environment,
    which costs more than the rest of a streamed call's setup."""
    key = (url, tuple(map(os.environ.get, _PROXY_VARS)))
    try:
        return _PROXIES[key]
    except KeyError:
        pass
    if len(_PROXIES) > 256:
        _PROXIES.clear()
    _PROXIES[key] = found = _lookup_proxy(url)
    return found


def _lookup_proxy(url: str) -> str | None:
    from urllib.parse import urlsplit
    from urllib.request import getproxies, proxy_bypass

    proxies = getproxies()
    parts = urlsplit(url)
    if not proxies or not parts.hostname or proxy_bypass(parts.hostname):
        return None
    return proxies.get(parts.scheme)


# -- Server-Sent Events ------------------------------------------------------------------


async def sse_batches(content: aiohttp.StreamReader) -> AsyncGenerator[list[tuple[str, bytes]], None]:
    """``(event, data)`` pairs, batched per network read. ``event`` is ``""`` when unnamed;
    multi-line data is joined with newlines; comments and ``id:``/``retry:`` are ignored."""
    rest = b""
    event = ""
    data: list[bytes] = []
    async for chunk in content.iter_any():
        if rest:
            chunk = rest + chunk
        lines = chunk.split(b"\n")
        rest = lines.pop()
        batch: list[tuple[str, bytes]] = []
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    batch.append((event, data[0] if len(data) == 1 else b"\n".join(data)))
                    data = []
                event = ""
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
        if batch:
            yield batch
    if rest.startswith(b"data:"):  # a last event without its blank line
        value = rest[5:]
        data.append(value[1:] if value.startswith(b" ") else value)
    if data:
        yield [(event, b"\n".join(data))]


# -- retries -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a failed call (before any of its output was read)."""

    retries: int = 3  # after the first attempt
    base_delay: float = 0.5  # seconds; doubled each retry, with jitter
    max_delay: float = 8.0
    max_retry_after: float = 60.0  # a provider asking for a longer wait gets an error at once

    def delay(self, retry: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry number ``retry`` (1-based), or None to give up."""
        if retry > self.retries:
            return None
        if retry_after is not None:
            return retry_after if retry_after <= self.max_retry_after else None
        backoff = min(self.max_delay, self.base_delay * (2 ** (retry - 1)))
        return backoff * (0.75 + random.random() * 0.5)


NO_RETRIES = RetryPolicy(retries=0)


def retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# -- errors --------------------------------------------------------------------------------


@dataclass
class CallTarget:
    """What an error message names: the model, the provider, the URL and where the key lives."""

    spec: str
    provider: str
    url: str
    key_hint: str  # e.g. "OPENAI_API_KEY (in .env or the shell)" or "the api_key of providers.x"
    secret: str | None = None  # masked in logged bodies


async def read_and_close(resp: aiohttp.ClientResponse) -> str:
    """The start of a response that is not the stream we asked for (for the log), then close it."""
    try:
        return (await resp.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace")
    except (TimeoutError, aiohttp.ClientError):
        return ""
    finally:
        resp.close()


def log_body(target: CallTarget, status: int, body: str) -> None:
    if target.secret:
        body = body.replace(target.secret, "***")
    log.warning("model call to %s: HTTP %s from %s: %s", target.spec, status, target.url, body[:MAX_ERROR_BODY])


def status_error(target: CallTarget, status: int, attempts: int, retry_wait: float | None = None, *,
                 in_stream: str | None = None) -> ModelCallError:
    """The typed error for an HTTP error status (after ``attempts`` attempts). ``in_stream``
    names an error the provider reported inside a 200 stream instead (``status`` is then
    its HTTP equivalent, e.g. 529 for Anthropic's ``overloaded_error``)."""
    where = (
        f"provider '{target.provider}' reported {in_stream} in its stream" if in_stream
        else f"HTTP {status} from provider '{target.provider}'"
    )
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    kw: dict[str, Any] = {"status": status, "provider": target.provider}
    if status in (401, 403):
        return ModelAuthError(
            target.spec, detail=f"{where}: the API key was refused; check {target.key_hint}", **kw
        )
    if status == 429:
        wait = f" (it asked to wait {retry_wait:.0f}s)" if retry_wait is not None else ""
        return ModelRateLimitError(
            target.spec,
            detail=f"{where}{tries}: rate limit or quota exceeded{wait}; retry later, lower the coordinator's "
                   "concurrency, or raise the account's limits",
            **kw,
        )
    if status >= 500:
        return ModelUnavailableError(
            target.spec, detail=f"{where}{tries}: the provider is failing or overloaded; retry later", **kw
        )
    if status == 404:
        detail = f"{where}: no such model or endpoint ({target.url}); check the model id and the provider's base_url"
    elif status == 413:
        detail = f"{where}: the request is too large for the model; shorten the conversation or enable compaction"
    else:
        detail = (
            f"{where}: the provider rejected the request; check the model id and the agent's settings "
            "(the provider's answer is in the server log)"
        )
    return ModelCallError(target.spec, detail=detail, **kw)


def connection_error(target: CallTarget, exc: BaseException, attempts: int, *, midstream: bool = False) -> ModelConnectionError:
    reason = _reason(exc)
    if midstream:
        detail = f"the connection to {target.url} broke while the answer streamed ({reason}); retry the prompt"
    else:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        detail = f"could not reach {target.url}{tries} ({reason}); check the provider's base_url and the network"
    return ModelConnectionError(target.spec, detail=detail, provider=target.provider)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the host name did not resolve"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "TLS failed"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused or unreachable"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "the server closed the connection"
    return type(exc).__name__
