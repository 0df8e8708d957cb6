"""A Python client for a Flue server (the counterpart of ``@flue/sdk``'s ``createFlueClient``).

::

    from flue.client import FlueClient

    async with FlueClient("http://127.0.0.1:3583", headers={"Authorization": "Bearer ..."}) as flue:
        admitted = await flue.agents.send("assistant", "customer-123", "Hello")
        async for event in flue.agents.stream("assistant", "customer-123", offset=admitted.offset):
            ...                                            # live: break when you have what you need
        answer = await flue.agents.wait(admitted)          # PromptResponse, from submission_settled
        done = await flue.agents.prompt("assistant", "customer-123", "And now?")   # ?wait=result
        print(done.result.text, done.result.usage.total_tokens, done.result.model.id)
        run = await flue.workflows.invoke("hello", {"name": "Ada"}, wait="result")
        record = await flue.runs.get(run.run_id)           # GET /runs/<id>?meta
        events = await flue.runs.events(run.run_id)        # catch-up list, ends with run_end

        async with flue.agents.connect("assistant", "customer-123") as chat:    # a WebSocket
            reply = await chat.prompt("Hello", session="support")
        job = flue.workflows.connect("hello")
        await job.ready
        result = await job.invoke({"name": "Ada"})

==================================  =========================================
``agents.send(name, id, message)``  ``POST /agents/<name>/<id>`` -> :class:`AgentAdmission`
``agents.prompt(...)``              ``POST ...?wait=result`` -> :class:`AgentResult`
``agents.wait(admission)``          follow the stream to ``submission_settled`` -> :class:`PromptResponse`
``agents.stream(name, id)``         ``GET /agents/<name>/<id>`` (Durable Streams) -> events
``agents.connect(name, id)``        WebSocket: ``ready``, sequential ``prompt(..., session=)``, ``close()``
``workflows.invoke(name, payload)`` ``POST /workflows/<name>`` -> admission, or result with ``wait="result"``
``workflows.run(name, payload)``    start, follow the run's stream to ``run_end`` -> (run id, result)
``workflows.connect(name)``         WebSocket: ``ready``, one ``invoke(payload)``
``runs.get(run_id)``                ``GET /runs/<id>?meta`` -> :class:`~flue.persistence.base.RunRecord`
``runs.stream(run_id)``             ``GET /runs/<id>`` -> events, ending after ``run_end``
``runs.events(run_id)``             catch-up read -> ``list`` of events
``admin.agents()``, ``admin.runs()`` the admin mount (``flue.server.admin``), when the server enables it
==================================  =========================================

Sockets go to the same URLs as HTTP (``ws://``/``wss://``); ``websocket_base_path``
replaces the mount path of the base URL for them (e.g. ``/api`` behind a proxy),
and ``websocket_url(url) -> url`` may rewrite each socket URL (a signed
handshake: ``lambda url: url.update_query(token=...)``). HTTP ``headers`` are
not sent on socket upgrades unless ``websocket_headers=True``: browsers cannot
send them, so servers usually take a ``?token=``.

Stream reads use the PyPI ``durable-streams`` client: catch-up reads until
up to date; ``live=True`` follows over SSE, reconnecting from the last offset
when the server ends a connection, and stops once the stream is closed (a
run's stream closes after ``run_end``; an agent's never does, so stop
iterating when you are done). Offsets from the server are opaque: pass them
back as they are. :meth:`FlueClient.read` yields ``(event, offset)`` pairs
where ``offset`` resumes right after that event.

Every error response raises :class:`FlueClientError` carrying the server's
envelope (``status``, ``type``, ``message``, ``details``, and ``dev`` hints from
``flue dev``); its ``repr`` shows them all, so a traceback says what went wrong.

Results and records use the wire's names as well as Python's: ``run.run_id``
and ``run.runId``, ``admitted.stream_url`` and ``admitted.streamUrl``,
``record.workflow_name`` and ``record.workflowName`` are the same fields (the
models of :mod:`flue.server.wire` and :class:`~flue.persistence.base.RunRecord`).
Events are the wire's dicts (``event["runId"]``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, overload
from urllib.parse import quote

import httpx

from flue.persistence.base import RunRecord, format_offset, parse_offset
from flue.server.wire import AgentAdmission, AgentResult, PromptResponse, WorkflowAdmission, WorkflowResult

__all__ = [
    "AgentAdmission",
    "AgentConnection",
    "AgentResult",
    "FlueClient",
    "FlueClientError",
    "PromptResponse",
    "RunRecord",
    "WorkflowAdmission",
    "WorkflowConnection",
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

    def __repr__(self) -> str:
        parts = [f"status={self.status!r}", f"type={self.type!r}", f"message={self.message!r}"]
        if self.details:
            parts.append(f"details={self.details!r}")
        if self.dev:
            parts.append(f"dev={self.dev!r}")
        if self.meta:
            parts.append(f"meta={self.meta!r}")
        return f"FlueClientError({', '.join(parts)})"

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
        websocket_base_path: str | None = None,
        websocket_url: Callable[[Any], Any] | None = None,
        websocket_headers: bool = False,
    ):
        self.base_url = base_url.rstrip("/")
        self.headers = dict(headers or {})
        self._http = http or httpx.AsyncClient(timeout=timeout)
        self._own_http = http is None
        self.websocket_base_path = websocket_base_path
        self.websocket_url = websocket_url
        self.websocket_headers = websocket_headers
        self.agents = Agents(self)
        self.workflows = Workflows(self)
        self.runs = Runs(self)
        self.admin = Admin(self)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> FlueClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    def socket_url(self, path: str) -> str:
        """The ``ws(s)://`` URL of a route: ``websocket_base_path`` as the mount, then the hook."""
        from yarl import URL

        base = URL(self.base_url)
        mount = self.websocket_base_path if self.websocket_base_path is not None else base.path
        url = base.with_scheme("wss" if base.scheme == "https" else "ws").with_path(
            "/" + "/".join(p for p in (mount.strip("/"), path.lstrip("/")) if p), encoded=True
        )
        if self.websocket_url is not None:
            url = URL(str(self.websocket_url(url)))
        return str(url)

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

    async def read(
        self, url: str, *, offset: str = "-1", live: bool = False
    ) -> AsyncGenerator[tuple[dict[str, Any], str], None]:
        """Read the Durable Stream at ``url`` from ``offset``: ``(event, offset after it)`` pairs.

        ``live=False`` stops when caught up; ``live=True`` follows over SSE until the
        stream is closed."""
        from durable_streams import DurableStreamError, FetchError, astream

        current = offset
        try:
            while True:
                async with astream(
                    url, offset=current, live="sse" if live else False, headers={**self.headers}, client=self._http
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
                async with astream(url, offset=current, live=False, headers={**self.headers}, client=self._http) as res:
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

    async def wait(
        self, admission: AgentAdmission, *, on_event: Callable[[dict[str, Any]], Any] | None = None
    ) -> PromptResponse:
        """Follow an admitted prompt's events (``on_event`` sees each) to its ``submission_settled``:
        the result, or :class:`FlueClientError` with the failure (as ``@flue/sdk``'s ``agents.wait``)."""
        async for event, _offset in self._c.read(admission.stream_url, offset=admission.offset, live=True):
            if event.get("submissionId") != admission.submission_id:
                continue
            if on_event is not None:
                out = on_event(event)
                if hasattr(out, "__await__"):
                    await out
            if event.get("type") != "submission_settled":
                continue
            if event.get("outcome") == "completed":
                return PromptResponse.model_validate(event.get("result") or {})
            raise _failed(event.get("error"), "the prompt failed")
        raise FlueClientError(f"the stream of submission {admission.submission_id} ended without a settlement")

    def connect(self, name: str, instance_id: str, *, session: str | None = None) -> AgentConnection:
        """A WebSocket to the instance (``await conn.ready`` or ``async with``); prompts on it run
        one after another, each in ``session`` unless the prompt names another."""
        return AgentConnection(self._c, self._c.socket_url(f"agents/{_segment(name)}/{_segment(instance_id)}"),
                               session=session)


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

    async def run(
        self, name: str, payload: Any = None, *, on_event: Callable[[dict[str, Any]], Any] | None = None
    ) -> WorkflowResult:
        """Start a run and follow its stream to ``run_end`` (``on_event`` sees each event): the
        result, or :class:`FlueClientError` with the run's error (``@flue/sdk``'s ``workflows.run``)."""
        admission = await self.invoke(name, payload)
        async for event, _offset in self._c.read(admission.stream_url, offset="-1", live=True):
            if on_event is not None:
                out = on_event(event)
                if hasattr(out, "__await__"):
                    await out
            if event.get("type") == "run_end" and event.get("runId") == admission.run_id:
                if event.get("isError"):
                    raise _failed(event.get("error"), f"workflow run {admission.run_id} failed")
                return WorkflowResult(run_id=admission.run_id, result=event.get("result"),
                                      stream_url=admission.stream_url, offset=admission.offset)
        record = await self._c.runs.get(admission.run_id)
        if record.status == "completed":
            return WorkflowResult(run_id=admission.run_id, result=record.result, stream_url=admission.stream_url,
                                  offset=admission.offset)
        raise _failed(record.error, f"workflow run {admission.run_id} ended without run_end")

    def connect(self, name: str) -> WorkflowConnection:
        """A WebSocket for one invocation of the workflow (``await conn.ready``, then ``invoke``)."""
        return WorkflowConnection(self._c, self._c.socket_url(f"workflows/{_segment(name)}"))


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


class Admin:
    """The server's admin mount (``flue.server.admin``; off unless the server enables it)."""

    def __init__(self, client: FlueClient, path: str = "/admin"):
        self._c = client
        self.path = "/" + path.strip("/")

    async def agents(self) -> list[dict[str, Any]]:
        """``[{name, description?, transports: {http?: true}, created: true}]``."""
        data = await self._c.request("GET", self._c.url(f"{self.path}/agents"))
        return list(data.get("items") or [])

    async def runs(
        self, *, status: str | None = None, workflow_name: str | None = None, limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[RunRecord], str | None]:
        """One page of runs, newest first, and the cursor of the next page (None at the end)."""
        params = {k: str(v) for k, v in {"status": status, "workflowName": workflow_name, "limit": limit,
                                         "cursor": cursor}.items() if v is not None}
        data = await self._c.request("GET", self._c.url(f"{self.path}/runs"), params=params)
        return [RunRecord.model_validate(r) for r in data.get("items") or []], data.get("nextCursor")


def _failed(error: Any, fallback: str) -> FlueClientError:
    err: dict[str, Any] = error if isinstance(error, dict) else {"message": str(error or fallback)}
    return FlueClientError(str(err.get("message") or fallback), type=str(err.get("type") or err.get("name") or
                                                                         "execution_failed"),
                           details=str(err.get("details") or ""), meta=err.get("meta"))


class _Socket:
    """A WebSocket speaking Flue's socket protocol (``flue.server.websocket``)."""

    def __init__(self, client: FlueClient, url: str):
        self._client = client
        self.url = url
        self._ws: Any = None
        self._session: Any = None
        self._requests = 0
        self.hello: dict[str, Any] | None = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("connect() needs a running event loop (call it from async code)") from None
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_task(self._open())

    async def _open(self) -> dict[str, Any]:
        import aiohttp

        self._session = aiohttp.ClientSession()
        headers = self._client.headers if self._client.websocket_headers else None
        try:
            self._ws = await self._session.ws_connect(self.url, headers=headers, max_msg_size=64 * 1024 * 1024)
        except aiohttp.WSServerHandshakeError as exc:
            await self._session.close()
            raise FlueClientError(f"the socket handshake was refused ({exc.status})", status=exc.status,
                                  type="handshake_refused") from exc
        except aiohttp.ClientError as exc:
            await self._session.close()
            raise FlueClientError(f"cannot open a socket to {self.url}: {exc!r}") from exc
        hello = await self._receive()
        if hello.get("type") != "ready":
            raise _failed(hello.get("error"), "the server did not say ready")
        self.hello = hello
        return hello

    def _request_id(self) -> str:
        self._requests += 1
        return f"r{self._requests}"

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ready
        await self._ws.send_json({"version": 1, **message})

    async def _receive(self) -> dict[str, Any]:
        import aiohttp

        msg = await self._ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise FlueClientError(f"the socket closed ({self._ws.close_code})", type="socket_closed")
        return json.loads(msg.data)

    async def _until_done(self, request_id: str, on_event: Callable[[dict[str, Any]], Any] | None) -> dict[str, Any]:
        while True:
            message = await self._receive()
            if message.get("requestId") not in (None, request_id):
                continue
            kind = message.get("type")
            if kind == "event" and on_event is not None:
                out = on_event(message.get("event") or {})
                if isinstance(out, Awaitable):
                    await out
            elif kind == "result":
                return message
            elif kind == "error":
                raise _failed(message.get("error"), "the request failed")

    async def close(self) -> None:
        if not self.ready.done():
            self.ready.cancel()
        with contextlib.suppress(BaseException):
            await self.ready
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> Any:
        await self.ready
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class AgentConnection(_Socket):
    """A WebSocket to one agent instance: sequential prompts, each in a session."""

    def __init__(self, client: FlueClient, url: str, *, session: str | None = None):
        super().__init__(client, url)
        self.session = session

    async def prompt(
        self, message: str, *, session: str | None = None, images: list[dict[str, Any]] | None = None,
        on_event: Callable[[dict[str, Any]], Any] | None = None,
    ) -> PromptResponse:
        """Send one prompt and wait for its result (``on_event`` sees its events as they come)."""
        request_id = self._request_id()
        body: dict[str, Any] = {"type": "prompt", "requestId": request_id, "message": message}
        if session or self.session:
            body["session"] = session or self.session
        if images:
            body["images"] = images
        await self._send(body)
        done = await self._until_done(request_id, on_event)
        return PromptResponse.model_validate(done.get("result") or {})


class WorkflowConnection(_Socket):
    """A WebSocket for one workflow invocation."""

    run_id: str | None = None

    async def invoke(self, payload: Any = None, *, on_event: Callable[[dict[str, Any]], Any] | None = None) -> Any:
        """Start the run and wait for its result (the workflow's return value)."""
        request_id = self._request_id()
        await self._send({"type": "invoke", "requestId": request_id, "payload": {} if payload is None else payload})
        done = await self._until_done(request_id, on_event)
        self.run_id = done.get("runId")
        return done.get("result")
