"""WebSocket connections to agent instances and workflows (Flue's socket protocol).

A WebSocket is a ``GET`` with ``Upgrade: websocket`` on the same URL as the
HTTP route, behind the same exposure and auth checks (a socket may carry its
bearer token as ``?token=`` since browsers cannot set headers on one; see
:mod:`flue.server.auth`). The protocol is Flue's (``flue-reference.md``
8.10): every message is a JSON text frame with ``version: 1`` and a ``type``;
``requestId`` is the client's correlation id, echoed on every message about
that request.

**Agent socket** ``/agents/<name>/<id>``: a long-lived connection to one
instance that carries sequential prompts, each choosing its session::

    server  {"version": 1, "type": "ready", "target": "agent", "name": "assistant", "instanceId": "u1"}
    client  {"version": 1, "type": "prompt", "requestId": "p1", "message": "Hello", "session"?: "support",
             "images"?: [{"type": "image", "data": "...", "mimeType": "image/png"}]}
    server  {"version": 1, "type": "started", "requestId": "p1", "submissionId": "...", "offset": "-1"}
    server  {"version": 1, "type": "event", "requestId": "p1", "offset": "<after it>", "event": {...}}  (repeated)
    server  {"version": 1, "type": "result", "requestId": "p1", "submissionId": "...", "result": {text, usage, model}}
        or  {"version": 1, "type": "error", "requestId": "p1", "error": {"type", "message", "details"}}
    client  {"version": 1, "type": "ping", "requestId"?: "x"}  ->  server {"version": 1, "type": "pong", ...}

Events are the submission's events from the instance's durable stream
(``submission_admitted`` through ``submission_settled``). One prompt at a
time: a prompt sent while another is in flight gets an ``error`` of type
``prompt_in_progress`` and is not admitted. ``session`` must be non-empty and
must not start with ``task:``. Closing the socket does not cancel an admitted
prompt: it is durable and finishes; its events stay readable over HTTP.

**Workflow socket** ``/workflows/<name>``: one invocation per connection::

    server  {"version": 1, "type": "ready", "target": "workflow", "name": "hello"}
    client  {"version": 1, "type": "invoke", "requestId": "r1", "payload"?: {...}}     (missing payload: {})
    server  {"version": 1, "type": "started", "requestId": "r1", "runId": "run_...", "streamUrl": ..., "offset": "-1"}
    server  {"version": 1, "type": "event", "requestId": "r1", "runId": "run_...", "offset": ..., "event": {...}}
    server  {"version": 1, "type": "result", "requestId": "r1", "runId": "run_...", "result": ...}
        or  {"version": 1, "type": "error", "requestId": "r1", "runId": "run_...", "error": {...}}

then the server closes the socket (1000). An invalid payload gets an
``error`` and the socket stays open for a corrected ``invoke``; a second
``invoke`` after one started gets an ``error`` and close **1008**.

Errors: a frame that is not a JSON object gets ``error`` (``WebSocket messages
must be valid JSON objects.``) and the socket stays open; a binary frame gets
``error`` and close **1003**; server shutdown closes sockets with **1001**.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from flue import strict_json
from flue.persistence.kit import dumps
from flue.redaction import scrub
from flue.runtime.instances import AgentNotFound, Backpressure, instance_path
from flue.server.auth import is_websocket_handshake
from flue.server.bodies import validation_details
from flue.server.errors import HttpError, failure
from flue.server.follow import follow_stream
from flue.server.limits import check_payload_size, check_prompt
from flue.server.lookup import run_stream_url
from flue.server.state import ServerState
from flue.server.wire import AgentPrompt

log = logging.getLogger("flue.server")

HEARTBEAT_S = 30.0


def is_websocket(request: web.Request) -> bool:
    """A request to upgrade: a complete handshake (the same test auth uses for ``?token=``)."""
    return is_websocket_handshake(request)


PROTOCOL_VERSION = 1
CLOSE_UNSUPPORTED = 1003  # a binary frame
CLOSE_POLICY = 1008  # a second invocation on a workflow socket
CLOSE_GOING_AWAY = 1001  # server shutdown


def _error(type_: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details}


def _internal() -> dict[str, Any]:
    """The caller-safe internal error (details stay in the server log)."""
    return _error("internal_error", "An internal error occurred.",
                  "The server encountered an unexpected error while handling this request.")


def frame(type_: str, request_id: Any = None, **fields: Any) -> dict[str, Any]:
    """One server message: ``{"version": 1, "type", "requestId"?, ...}``."""
    out: dict[str, Any] = {"version": PROTOCOL_VERSION, "type": type_}
    if request_id is not None:
        out["requestId"] = request_id
    out.update({k: v for k, v in fields.items() if v is not None})
    return out


def error_frame(error: dict[str, Any], request_id: Any = None, **fields: Any) -> dict[str, Any]:
    return frame("error", request_id, **fields, error=scrub(error))  # never a known secret (flue.redaction)


async def _open(request: web.Request, state: ServerState, hello: dict[str, Any]) -> web.WebSocketResponse:
    # one message may be as large as one request body (limits.body)
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=int(state.project.config.limits.body))
    await ws.prepare(request)
    state.track_socket(ws)
    await ws.send_json(hello)
    return ws


class _Binary(Exception):
    """The client sent a binary frame: answered, then the socket is closed with 1003."""


async def _messages(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The client's well-formed messages until it closes. A malformed frame gets an error reply
    (the socket stays open); a binary frame gets one and closes the socket with 1003; a ``ping``
    gets a ``pong``."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            return
        if msg.type == WSMsgType.BINARY:
            await ws.send_json(error_frame(_error("invalid_request", "WebSocket messages must be JSON text frames.")))
            await ws.close(code=CLOSE_UNSUPPORTED, message=b"binary frames are not supported")
            return
        data, problem = _parse(msg)
        if data is None:
            await ws.send_json(error_frame(problem or _internal()))
            continue
        if data["type"] == "ping":
            await ws.send_json(frame("pong", data.get("requestId")))
            continue
        yield data


def _parse(msg: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(message, None) or (None, error) for one received text frame. The boundary rules of
    :mod:`flue.strict_json` apply; the message object itself is one level, so a payload in
    it may nest as deep as an HTTP body."""
    try:
        data = strict_json.loads(msg.data, max_depth=strict_json.MAX_DEPTH + 1)
    except strict_json.JsonRuleError as exc:
        return None, _error("invalid_request", "WebSocket messages must be valid JSON objects.", str(exc))
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None, _error("invalid_request", "WebSocket messages must be valid JSON objects.",
                            'Each message is a JSON object with a "type" (and "version": 1).')
    version = data.get("version", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        return None, _error("invalid_request", f"Unsupported protocol version {version!r}.",
                            'This server speaks "version": 1.')
    return data, None


# -- agents ---------------------------------------------------------------------------------


async def agent_socket(request: web.Request, state: ServerState, agent: str, instance_id: str) -> web.WebSocketResponse:
    ws = await _open(request, state, frame("ready", target="agent", name=agent, instanceId=instance_id))
    current: asyncio.Task[None] | None = None
    try:
        async for data in _messages(ws):
            request_id = data.get("requestId")
            if data["type"] != "prompt":
                await ws.send_json(error_frame(
                    _error("invalid_request", f"Unknown message type {data['type']!r}.",
                           "An agent socket accepts 'prompt' and 'ping' messages."), request_id))
                continue
            if current is not None and not current.done():
                await ws.send_json(error_frame(
                    _error("prompt_in_progress", "A prompt is already in progress.",
                           "Wait for its result before sending the next prompt."), request_id))
                continue
            try:
                body = AgentPrompt.model_validate(
                    {k: v for k, v in data.items() if k not in ("type", "version", "requestId")})
            except ValidationError as exc:
                await ws.send_json(error_frame(
                    _error("invalid_request", "The prompt is invalid.", validation_details(exc)), request_id))
                continue
            if body.session is not None and body.session.startswith("task:"):
                await ws.send_json(error_frame(
                    _error("invalid_request", "The prompt is invalid.", 'session must not start with "task:".'),
                    request_id))
                continue
            try:
                check_prompt(body, state.project.config.limits)
            except HttpError as exc:
                await ws.send_json(error_frame(_error(exc.type, exc.message, exc.details), request_id))
                continue
            current = asyncio.create_task(
                _quietly(_prompt(ws, state, agent, instance_id, body, request_id), ws, request_id)
            )
    finally:
        # the submission is durable and keeps running; only the forwarding stops
        if current is not None and not current.done():
            current.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await current
    return ws


async def _prompt(
    ws: web.WebSocketResponse, state: ServerState, agent: str, instance_id: str, body: AgentPrompt, request_id: Any
) -> None:
    runtime = state.runtime
    path = instance_path(agent, instance_id)
    try:
        sub, offset = await runtime.coordinator.admit_prompt(
            agent, instance_id, body.message, images=body.image_dicts(), session=body.session or "default"
        )
    except AgentNotFound:
        await ws.send_json(error_frame(_error("agent_not_found", f'Agent "{agent}" is not registered.'), request_id))
        return
    except Backpressure as exc:  # nothing was admitted; the client may send the prompt again later
        await ws.send_json(error_frame(_error(exc.error_type, str(exc), exc.details), request_id,
                                       retryAfter=exc.retry_after))
        return
    sid = sub.submission_id
    await ws.send_json(frame("started", request_id, submissionId=sid, offset=offset))
    async for event, after in follow_stream(runtime.stores.streams, path, offset):
        if event.get("submissionId") != sid:
            continue  # another socket's or a dispatch's activity on the same instance
        await ws.send_json(frame("event", request_id, offset=after, event=event))
        if event.get("type") == "submission_settled":
            if event.get("outcome") == "completed":
                await ws.send_json(frame("result", request_id, submissionId=sid, result=event.get("result")))
            else:
                # typed like ?wait=result: Flue's own errors keep their type, others are internal_error
                failed = failure(event.get("error") or {}, "The prompt failed.")
                await ws.send_json(error_frame(_error(failed.type, failed.message, failed.details), request_id,
                                               submissionId=sid))
            return


# -- workflows ------------------------------------------------------------------------------


async def workflow_socket(request: web.Request, state: ServerState, workflow: str) -> web.WebSocketResponse:
    from flue.runtime.workflows import InvalidPayload, WorkflowNotFound, run_stream_path, start_run

    ws = await _open(request, state, frame("ready", target="workflow", name=workflow))
    forward: asyncio.Task[None] | None = None
    try:
        async for data in _messages(ws):
            request_id = data.get("requestId")
            if forward is not None:
                await ws.send_json(error_frame(_error(
                    "invalid_request", "Workflow WebSocket connections accept one invocation only.",
                    "Open a new socket for another invocation."), request_id))
                await ws.close(code=CLOSE_POLICY, message=b"one invocation per connection")
                break
            if data["type"] != "invoke":
                await ws.send_json(error_frame(_error(
                    "invalid_request", f"Unknown message type {data['type']!r}.",
                    "A workflow socket accepts one 'invoke' message (and 'ping')."), request_id))
                continue
            payload = data.get("payload")
            payload = {} if payload is None else payload
            try:
                check_payload_size(len(dumps(payload).encode("utf-8")), state.project.config.limits)
            except HttpError as exc:
                await ws.send_json(error_frame(_error(exc.type, exc.message, exc.details), request_id))
                continue
            try:
                handle = await start_run(state.runtime, workflow, payload, req=request)
            except InvalidPayload as exc:
                await ws.send_json(error_frame(_error(
                    "invalid_request", "The payload does not match the workflow's schema.", str(exc)), request_id))
                continue
            except WorkflowNotFound:  # removed by a reload since the handshake
                await ws.send_json(error_frame(_error(
                    "workflow_not_found", f'Workflow "{workflow}" is not registered.'), request_id))
                continue
            except Exception:
                # an HTTP error response cannot follow the upgrade; say it in a frame instead
                log.exception("starting workflow %r from a socket failed", workflow)
                await ws.send_json(error_frame(_internal(), request_id))
                continue
            state.track_run(handle.task)
            await ws.send_json(frame(
                "started", request_id, runId=handle.run_id, streamUrl=run_stream_url(request, handle.run_id),
                offset="-1",
            ))
            forward = asyncio.create_task(_quietly(
                _forward_run(ws, state, handle.run_id, run_stream_path(handle.run_id), request_id), ws, request_id,
                close=True,
            ))
    finally:
        if forward is not None and not forward.done():
            forward.cancel()  # the run itself continues; only forwarding stops
            with contextlib.suppress(asyncio.CancelledError):
                await forward
    return ws


async def _forward_run(
    ws: web.WebSocketResponse, state: ServerState, run_id: str, path: str, request_id: Any
) -> None:
    async for event, after in follow_stream(state.runtime.stores.streams, path, "-1"):
        await ws.send_json(frame("event", request_id, runId=run_id, offset=after, event=event))
        if event.get("type") == "run_end":
            if event.get("isError"):
                # typed like ?wait=result; what went wrong is in the run_end event just forwarded
                failed = failure(event.get("error") or {}, "The workflow run failed.",
                                 "The run's events, ending with run_end, were sent above.")
                await ws.send_json(error_frame(_error(failed.type, failed.message, failed.details), request_id,
                                               runId=run_id))
            else:
                await ws.send_json(frame("result", request_id, runId=run_id, result=event.get("result")))
            await ws.close()
            return


async def _quietly(coro: Any, ws: web.WebSocketResponse, request_id: Any = None, *, close: bool = False) -> None:
    """Run a forwarding coroutine. A client that went away mid-send is not an error; any other
    failure (a store gone away...) is logged and told to the client, so it does not wait forever."""
    try:
        await coro
    except (ConnectionResetError, RuntimeError) as exc:
        log.debug("websocket forwarding stopped: %r", exc)
    except Exception:
        log.exception("websocket forwarding failed")
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await ws.send_json(error_frame(_internal(), request_id))
            if close:  # a workflow socket has nothing more to say; an agent socket takes the next prompt
                await ws.close()
