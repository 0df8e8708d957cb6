"""What the three native clients share: endpoint settings, the API key, and the streamed call.

A client subclass says how to build the request body (``body``), where to send
it (``path``), which headers carry the key (``auth_headers``) and how to read
its event stream (``parser``: one :class:`StreamParser` per call). The call
itself, :meth:`NativeProvider.stream`, is the same for all: POST the JSON,
retry what may be retried while nothing has been yielded yet, then turn each
SSE event into at most one :class:`~flue.models.base.ModelChunk`.

Closing the stream early (``aclose()``, or cancelling the task that reads it)
closes the HTTP connection, so the provider stops generating.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any, ClassVar

import aiohttp
from pydantic_core import to_json

from flue.config import ProviderConfig
from flue.harness.errors import MissingApiKeyError, ModelCallError, ProviderConfigError
from flue.models.base import ModelChunk, ModelRequest
from flue.models.catalog import ModelInfo, model_info
from flue.models.endpoints import Endpoint, find_api_key
from flue.models.http import (
    RETRYABLE_STATUS,
    CallTarget,
    RetryPolicy,
    client_session,
    connection_error,
    log,
    log_body,
    proxy_for,
    read_and_close,
    retry_after,
    sse_batches,
    status_error,
)

_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,47}")


class StreamFailure(Exception):
    """An error the provider reported inside a stream; ``status`` is its HTTP equivalent."""

    def __init__(self, status: int, code: str, message: str = ""):
        super().__init__(message)
        self.status = status
        self.code = code if _ERROR_CODE.fullmatch(code or "") else "an error"
        self.message = message


class StreamParser:
    """Reads one call's events. ``feed`` returns the chunk an event makes, if any;
    ``finish`` the last one (usage, finish reason, extras) once the stream ended."""

    def feed(self, event: str, data: bytes) -> ModelChunk | None:
        raise NotImplementedError

    def finish(self) -> ModelChunk | None:
        raise NotImplementedError


class IncompleteStream(Exception):
    """The stream ended before the provider said the answer was complete."""


class NativeProvider:
    """Base class of the native clients (not a public extension point)."""

    api: ClassVar[str]

    def __init__(self, provider_id: str, endpoint: Endpoint, registration: ProviderConfig | None = None, *,
                 retry: RetryPolicy | None = None):
        reg = registration
        if reg is not None and reg.api is not None and reg.api != endpoint.api:
            endpoint = replace(endpoint, api=reg.api)
        self.provider_id = provider_id
        self.endpoint = endpoint
        self.registration = reg
        self.base_url = ((reg.base_url if reg is not None and reg.base_url else endpoint.base_url) or "").rstrip("/")
        self.retry = retry or RetryPolicy()
        self._extra_headers = dict(reg.headers) if reg is not None else {}
        self._info: dict[str, ModelInfo] = {}
        self._headers: tuple[str | None, dict[str, str]] | None = None
        self._proxy: tuple[str, str | None] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.provider_id} {self.base_url}>"

    # -- what subclasses provide --------------------------------------------------------

    path: ClassVar[str]

    def auth_headers(self, key: str | None) -> dict[str, str]:
        raise NotImplementedError

    def body(self, request: ModelRequest, info: ModelInfo) -> dict[str, Any]:
        raise NotImplementedError

    def parser(self, request: ModelRequest, info: ModelInfo) -> StreamParser:
        raise NotImplementedError

    # -- settings ---------------------------------------------------------------------------

    def model_info(self, model: str) -> ModelInfo:
        info = self._info.get(model)
        if info is None:
            info = self._info[model] = model_info(self.provider_id, model, self.registration)
        return info

    def url(self) -> str:
        if not self.base_url:
            raise ProviderConfigError(
                f"provider '{self.provider_id}' (api: {self.api}) needs 'base_url:' in its registration"
            )
        return self.base_url + self.path

    def proxy(self, url: str) -> str | None:
        if self._proxy is None or self._proxy[0] != url:
            self._proxy = (url, proxy_for(url))
        return self._proxy[1]

    def api_key(self, model: str | None = None) -> str | None:
        """The key to send, read from the environment on each call (``.env`` may load late)."""
        key, missing = find_api_key(self.endpoint, self.registration, os.environ)
        if missing is not None:
            raise MissingApiKeyError(self.provider_id, missing, model=model)
        return key

    def key_hint(self) -> str:
        reg = self.registration
        if reg is not None and reg.api_key_env:
            return f"{reg.api_key_env} (in the project's .env or the shell)"
        if reg is not None and reg.api_key:
            return f"providers.{self.provider_id}.api_key in flue.yaml"
        if self.endpoint.key_env:
            return f"{self.endpoint.key_env[0]} (in the project's .env or the shell)"
        return f"the key of providers.{self.provider_id} (api_key_env: in flue.yaml)"

    def headers(self, key: str | None) -> dict[str, str]:
        cached = self._headers
        if cached is not None and cached[0] == key:
            return cached[1]
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream", **self.auth_headers(key)}
        headers.update(self._extra_headers)  # the registration's headers win
        self._headers = (key, headers)
        return headers

    # -- the call -----------------------------------------------------------------------------

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        key = self.api_key(request.spec)
        url = self.url()
        info = self.model_info(request.model)
        headers = self.headers(key)
        payload = encode_body(self.body(request, info))
        target = CallTarget(request.spec, self.provider_id, url, self.key_hint(), key)
        proxy = self.proxy(url)
        attempt = 0
        while True:
            attempt += 1
            session = await client_session()
            try:
                resp = await session.post(url, data=payload, headers=headers, proxy=proxy)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                wait = self.retry.delay(attempt, None)
                if wait is None:
                    raise connection_error(target, exc, attempt) from None
                log.info("model call to %s: could not reach %s (%r); retrying in %.2fs", target.spec, url, exc, wait)
                await asyncio.sleep(wait)
                continue
            if resp.status != 200:
                status, asked = resp.status, retry_after(resp.headers)
                log_body(target, status, await read_and_close(resp))
                wait = self.retry.delay(attempt, asked) if status in RETRYABLE_STATUS else None
                if wait is None:
                    raise status_error(target, status, attempt, asked)
                await asyncio.sleep(wait)
                continue

            if resp.content_type != "text/event-stream":
                raise await self._not_a_stream(resp, target)
            parser = self.parser(request, info)
            events = sse_batches(resp.content)
            yielded = finished = False
            failure: StreamFailure | None = None
            try:
                async for batch in events:
                    for event, data in batch:
                        chunk = parser.feed(event, data)
                        if chunk is not None:
                            yielded = True
                            yield chunk
                try:
                    last = parser.finish()
                except IncompleteStream as exc:
                    raise connection_error(target, exc, attempt, midstream=True) from None
                finished = True
                if last is not None:
                    yield last
                return
            except StreamFailure as exc:
                failure = exc
            except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
                # the connection broke: retried only if none of the answer was passed on yet
                wait = None if yielded else self.retry.delay(attempt, None)
                if wait is None:
                    raise connection_error(target, exc, attempt, midstream=True) from None
            finally:
                if finished:
                    resp.release()  # read to the end: the connection goes back to the pool
                else:
                    resp.close()  # cancelled, closed early or failed: drop the connection
                    await events.aclose()
            if failure is not None:
                log.warning("model call to %s: %s in the stream from %s: %s", target.spec, failure.code, url,
                            failure.message[:500].replace(key, "***") if key else failure.message[:500])
                retryable = failure.status in RETRYABLE_STATUS and not yielded
                wait = self.retry.delay(attempt, None) if retryable else None
                if wait is None:
                    raise status_error(target, failure.status, attempt, in_stream=failure.code)
            else:
                log.info("model call to %s: the stream broke before any output; retrying in %.2fs", target.spec, wait)
            await asyncio.sleep(wait or 0)

    async def _not_a_stream(self, resp: aiohttp.ClientResponse, target: CallTarget) -> ModelCallError:
        """A 200 that is no event stream: most likely a base_url pointing at another API."""
        log_body(target, resp.status, await read_and_close(resp))
        return ModelCallError(
            target.spec, provider=self.provider_id, status=resp.status,
            detail=f"{target.url} answered with {resp.content_type or 'no content type'}, not an event stream: "
                   f"check that the provider's base_url serves the {self.api} API",
        )


# -- helpers the clients share ----------------------------------------------------------------


_BODY = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))  # built once (json.dumps makes one per call)


def encode_body(body: dict[str, Any]) -> bytes:
    try:
        return to_json(body)  # pydantic-core's serializer: UTF-8 bytes at once, a few times faster
    except ValueError:
        pass  # a lone surrogate (or a value it cannot serialize): the json module's way below
    text = _BODY.encode(body)
    try:
        return text.encode()
    except UnicodeEncodeError:
        # a lone surrogate (e.g. from a tool's broken output) has no UTF-8 form: replace it
        return text.encode("utf-8", "replace")


def loads(data: bytes) -> Any:
    """An event's JSON; a malformed event is a broken stream."""
    try:
        return json.loads(data)
    except ValueError:
        raise StreamFailure(502, "malformed_event", data[:200].decode("utf-8", "replace")) from None


def tool_spec_parts(spec: dict[str, Any]) -> tuple[str, str, dict[str, Any]]:
    """(name, description, JSON schema) of an OpenAI function spec."""
    fn = spec.get("function") or spec
    return fn.get("name", ""), fn.get("description") or "", fn.get("parameters") or {"type": "object", "properties": {}}


def image_source(part: dict[str, Any]) -> tuple[str | None, str, str]:
    """An ``image_url`` content part as (media type or None for a URL, base64 data or URL, url)."""
    url = (part.get("image_url") or {}).get("url", "") if isinstance(part.get("image_url"), dict) else str(
        part.get("image_url") or ""
    )
    if url.startswith("data:") and ";base64," in url:
        head, _, data = url.partition(";base64,")
        return head[len("data:"):] or "image/png", data, url
    return None, url, url


def text_of(content: Any) -> str:
    """Message content (a string or content parts) as plain text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return "" if content is None else str(content)
