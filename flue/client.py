"""A Python client for a Flue server (the counterpart of ``@flue/sdk``'s ``createFlueClient``).

::

    from flue.client import FlueClient

    async with FlueClient("http://127.0.0.1:3583", headers={"Authorization": "Bearer ..."}) as flue:
        admitted = await flue.agents.send("assistant", "customer-123", "Hello")
        async for event in flue.agents.stream("assistant", "customer-123", offset=admitted.offset):
            ...                                            # live: break when you have what you need
        done = await flue.agents.prompt("assistant", "customer-123", "And now?")   # ?wait=result
        run = await flue.workflows.invoke("hello", {"name": "Ada"}, wait="result")
        record = await flue.runs.get(run.run_id)           # GET /runs/<id>?meta
        events = await flue.runs.events(run.run_id)        # catch-up list, ends with run_end

================================  =========================================
``agents.send(name, id, message)``  ``POST /agents/<name>/<id>`` -> :class:`AgentAdmission`
``agents.prompt(...)``              ``POST ...?wait=result`` -> :class:`AgentResult`
``agents.stream(name, id)``         ``GET /agents/<name>/<id>`` (Durable Streams) -> events
``workflows.invoke(name, payload)`` ``POST /workflows/<name>`` -> admission, or result with ``wait="result"``
``runs.get(run_id)``                ``GET /runs/<id>?meta`` -> :class:`~flue.persistence.base.RunRecord`
``runs.stream(run_id)``             ``GET /runs/<id>`` -> events, ending after ``run_end``
``runs.events(run_id)``             catch-up read -> ``list`` of events
================================  =========================================

Stream reads use the PyPI ``durable-streams`` client: catch-up reads until
up to date; ``live=True`` follows over SSE, reconnecting from the last offset
when the server ends a connection, and stops once the stream is closed (a
run's stream closes after ``run_end``; an agent's never does, so stop
iterating when you are done). Offsets from the server are opaque: pass them
back as they are. :meth:`FlueClient.read` yields ``(event, offset)`` pairs
where ``offset`` resumes right after that event.

Every error response raises :class:`FlueClientError` carrying the server's
envelope (``status``, ``type``, ``message``, ``details``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

from flue.persistence.base import RunRecord, format_offset, parse_offset
from flue.server.wire import AgentAdmission, AgentResult, WorkflowAdmission, WorkflowResult

__all__ = [
    "AgentAdmission",
    "AgentResult",
    "FlueClient",
    "FlueClientError",
    "RunRecord",
    "WorkflowAdmission",
    "WorkflowResult",
]


class FlueClientError(Exception):
    """A failed request: the server's error envelope, or a transport failure (``status`` None)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        type: str = "request_failed",
        details: str = "",
        dev: str | None = None,
        meta: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.type = type
        self.message = message
        self.details = details
        self.dev = dev
        self.meta = meta or {}

    def __str__(self) -> str:
        where = f"{self.status} " if self.status is not None else ""
        text = f"{where}{self.type}: {self.message}"
        return f"{text} {self.details}" if self.details else text

    @classmethod
    def from_body(cls, status: int, body: Any) -> FlueClientError:
        import json

        if isinstance(body, bytes | str):
            try:
                body = json.loads(body)
            except (ValueError, TypeError):
                body = None
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return cls(
                str(err.get("message") or ""), status=status, type=err["type"], details=str(err.get("details") or ""),
                dev=err.get("dev"), meta=err.get("meta"),
            )
        return cls(f"HTTP {status}", status=status, type="http_error")


def _segment(value: str) -> str:
    return quote(value, safe="")


def _offsets(start: str, end: str, count: int) -> list[str]:
    """The offset after each of ``count`` events read between ``start`` and ``end``.

    Flue's offsets count events, so each event gets its exact resume point; for
    offsets of any other shape every event but the last resumes at ``start``
    (re-reading a few events rather than skipping any)."""
    try:
        first, last = parse_offset(start), parse_offset(end)
    except ValueError:
        return [start] * (count - 1) + [end] if count else []
    if last - first != count:
        return [start] * (count - 1) + [end] if count else []
    return [format_offset(first + i) for i in range(1, count + 1)]


class FlueClient:
    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        http: httpx.AsyncClient | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._own_http = http is None
        self.agents = Agents(self)
        self.workflows = Workflows(self)
        self.runs = Runs(self)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> FlueClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    async def request(
        self, method: str, url: str, *, json: Any = None, params: Mapping[str, str] | None = None,
        wait: bool = False,
    ) -> Any:
        """Send a request; return the decoded JSON body or raise :class:`FlueClientError`.
        ``wait`` lifts the read timeout (``?wait=result`` answers when the work is done)."""
        timeout: Any = httpx.USE_CLIENT_DEFAULT
        if wait:
            timeout = httpx.Timeout(self._http.timeout.connect, read=None, write=None, pool=None)
        try:
            response = await self._http.request(
                method, url, json=json, params=params, headers=self.headers, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise FlueClientError(f"request to {url} failed: {exc!r}") from exc
        if response.status_code >= 400:
            raise FlueClientError.from_body(response.status_code, response.content)
        try:
            return response.json()
        except ValueError as exc:
            raise FlueClientError(f"{url} answered {response.status_code} without JSON", status=response.status_code) from exc

    async def read(self, url: str, *, offset: str = "-1", live: bool = False) -> AsyncIterator[tuple[dict[str, Any], str]]:
        """Read the Durable Stream at ``url`` from ``offset``: ``(event, offset after it)`` pairs.

        ``live=False`` stops when caught up; ``live=True`` follows over SSE until the
        stream is closed."""
        from durable_streams import DurableStreamError, FetchError, astream

        current = offset
        try:
            while True:
                async with astream(
                    url, offset=current, live="sse" if live else False, headers=self.headers, client=self._http
                ) as res:
                    async for batch in res.iter_events(mode="json"):
                        items = batch.data if isinstance(batch.data, list) else [batch.data]
                        for item, after in zip(items, _offsets(current, batch.next_offset, len(items)), strict=True):
                            yield item, after
                        current = batch.next_offset
                    closed = res.headers.get("stream-closed") == "true"
                if not live or closed:
                    return
                # The SSE response ended: the server's connection limit, or the stream closed.
                # A catch-up read says which (and delivers anything appended meanwhile).
                async with astream(url, offset=current, live=False, headers=self.headers, client=self._http) as res:
                    async for batch in res.iter_events(mode="json"):
                        items = batch.data if isinstance(batch.data, list) else [batch.data]
                        for item, after in zip(items, _offsets(current, batch.next_offset, len(items)), strict=True):
                            yield item, after
                        current = batch.next_offset
                    if res.headers.get("stream-closed") == "true" and res.up_to_date:
                        return
        except DurableStreamError as exc:
            if exc.status is None:
                raise FlueClientError(f"reading {url} failed: {exc}") from exc
            error = FlueClientError.from_body(exc.status, exc.details)
            if error.type == "http_error" and exc.status == 404:
                # durable-streams drops the body of a 404 (StreamNotFoundError); the envelope
                # says which 404 it is (stream_not_found, run_not_found, agent_not_found...)
                error = await self._not_found(url, current)
            raise error from exc
        except FetchError as exc:
            if exc.status is None:
                raise FlueClientError(f"reading {url} failed: {exc.message}") from exc
            raise FlueClientError.from_body(exc.status, exc.body) from exc
        except httpx.HTTPError as exc:
            raise FlueClientError(f"reading {url} failed: {exc!r}") from exc

    async def _not_found(self, url: str, offset: str) -> FlueClientError:
        """The server's envelope for a stream read that answered 404."""
        fallback = FlueClientError(f"no stream at {url}", status=404, type="not_found")
        try:
            response = await self._http.get(url, params={"offset": offset}, headers=self.headers)
        except httpx.HTTPError:
            return fallback
        if response.status_code != 404:
            return fallback
        error = FlueClientError.from_body(404, response.content)
        return fallback if error.type == "http_error" else error


class Agents:
    def __init__(self, client: FlueClient):
        self._c = client

    def url(self, name: str, instance_id: str) -> str:
        return self._c.url(f"agents/{_segment(name)}/{_segment(instance_id)}")

    @staticmethod
    def _body(message: str, images: list[dict[str, Any]] | None, session: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"message": message}
        if images:
            body["images"] = images
        if session:
            body["session"] = session
        return body

    async def send(
        self, name: str, instance_id: str, message: str, *, images: list[dict[str, Any]] | None = None,
        session: str | None = None,
    ) -> AgentAdmission:
        """Admit a prompt (202); read its events from ``offset`` at ``stream_url``."""
        data = await self._c.request("POST", self.url(name, instance_id), json=self._body(message, images, session))
        return AgentAdmission.model_validate(data)

    async def prompt(
        self, name: str, instance_id: str, message: str, *, images: list[dict[str, Any]] | None = None,
        session: str | None = None,
    ) -> AgentResult:
        """Prompt and wait for the result (``?wait=result``)."""
        data = await self._c.request(
            "POST", self.url(name, instance_id), json=self._body(message, images, session),
            params={"wait": "result"}, wait=True,
        )
        return AgentResult.model_validate(data)

    async def stream(
        self, name: str, instance_id: str, *, offset: str = "-1", live: bool = True
    ) -> AsyncIterator[dict[str, Any]]:
        """The instance's events from ``offset``; live by default (an agent stream never ends)."""
        async for event, _offset in self._c.read(self.url(name, instance_id), offset=offset, live=live):
            yield event


class Workflows:
    def __init__(self, client: FlueClient):
        self._c = client

    def url(self, name: str) -> str:
        return self._c.url(f"workflows/{_segment(name)}")

    @overload
    async def invoke(self, name: str, payload: Any = ..., *, wait: Literal[False] = ...) -> WorkflowAdmission: ...

    @overload
    async def invoke(self, name: str, payload: Any = ..., *, wait: Literal["result"]) -> WorkflowResult: ...

    async def invoke(
        self, name: str, payload: Any = None, *, wait: Literal[False, "result"] = False
    ) -> WorkflowAdmission | WorkflowResult:
        """Start a run (202 admission), or with ``wait="result"`` wait for its return value."""
        if wait not in (False, "result"):
            raise ValueError("wait must be False or 'result'")
        params = {"wait": "result"} if wait == "result" else None
        data = await self._c.request(
            "POST", self.url(name), json={} if payload is None else payload, params=params, wait=bool(wait)
        )
        if wait == "result":
            return WorkflowResult.model_validate(data)
        return WorkflowAdmission.model_validate(data)


class Runs:
    def __init__(self, client: FlueClient):
        self._c = client

    def url(self, run_id: str) -> str:
        return self._c.url(f"runs/{_segment(run_id)}")

    async def get(self, run_id: str) -> RunRecord:
        """The run record (``?meta``): status, payload, result or error, timings."""
        data = await self._c.request("GET", self.url(run_id), params={"meta": ""})
        return RunRecord.model_validate(data)

    async def stream(self, run_id: str, *, offset: str = "-1", live: bool = True) -> AsyncIterator[dict[str, Any]]:
        """The run's events from ``offset``; with ``live`` until the stream closes after ``run_end``."""
        async for event, _offset in self._c.read(self.url(run_id), offset=offset, live=live):
            yield event

    async def events(self, run_id: str, *, offset: str = "-1") -> list[dict[str, Any]]:
        """Every event so far (catch-up only)."""
        return [event async for event, _offset in self._c.read(self.url(run_id), offset=offset, live=False)]
