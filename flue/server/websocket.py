"""WebSocket connections to agent instances and workflows.

A WebSocket is a ``GET`` with ``Upgrade: websocket`` on the same URL as the
HTTP route, behind the same exposure and auth checks (a socket may carry its
bearer token as ``?token=`` since browsers cannot set headers on one; see
:mod:`flue.server.auth`). Every message is a JSON text frame with a ``type``.

**Agent socket** ``/agents/<name>/<id>``: a long-lived connection to one
instance that carries sequential prompts, each choosing its session::

    server  {"type": "ready", "agent": "assistant", "instanceId": "u1"}
    client  {"type": "prompt", "message": "Hello", "session"?: "support",
             "images"?: [{"type": "image", "data": "...", "mimeType": "image/png"}],
             "id"?: "p1"}
    server  {"type": "admitted", "id": "p1", "submissionId": "sub_...", "offset": "-1"}
    server  {"type": "event", "id": "p1", "offset": "<after this event>", "event": {...}}   (repeated)
    server  {"type": "result", "id": "p1", "submissionId": "sub_...", "result": {"text": ..., "data": ...}}
        or  {"type": "error", "id": "p1", "submissionId": "sub_...", "error": {"type", "message", "details"}}

``id`` is the client's correlation id, echoed on every message about that
prompt (omitted when the client sent none). Events are the submission's
events from the instance's durable stream (``submission_admitted`` through
``submission_settled``). One prompt at a time: a prompt sent while another is
in flight gets an ``error`` of type ``prompt_in_progress`` and is not admitted.
A malformed message gets an ``error`` (``invalid_json`` / ``invalid_request``);
the socket stays open. Closing the socket does not cancel an admitted prompt:
it is durable and finishes; its events stay readable over HTTP.

**Workflow socket** ``/workflows/<name>``: one invocation per connection::

    server  {"type": "ready", "workflow": "hello"}
    client  {"type": "invoke", "payload"?: {...}}
    server  {"type": "admitted", "runId": "run_...", "streamUrl": "http://.../runs/run_...", "offset": "-1"}
    server  {"type": "event", "offset": "...", "event": {...}}             (run_start ... run_end)
    server  {"type": "result", "runId": "run_...", "result": ...}
        or  {"type": "error", "runId": "run_...", "error": {"type", "message", "details"}}

then the server closes the socket (code 1000). An invalid payload gets an
``error`` and the socket stays open for a corrected ``invoke``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from flue.runtime.instances import AgentNotFound, instance_path
from flue.server.bodies import validation_details
from flue.server.errors import failure
from flue.server.follow import follow_stream
from flue.server.lookup import run_stream_url
from flue.server.state import ServerState
from flue.server.wire import AgentPrompt

log = logging.getLogger("flue.server")

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # images are up to 14 MiB each
HEARTBEAT_S = 30.0


def is_websocket(request: web.Request) -> bool:
    return (
        request.method == "GET"
        and request.headers.get("Upgrade", "").lower() == "websocket"
        and "upgrade" in request.headers.get("Connection", "").lower()
    )


def _error(type_: str, message: str, details: str = "") -> dict[str, Any]:
    return {"type": type_, "message": message, "details": details}


def _internal() -> dict[str, Any]:
    """The caller-safe internal error (details stay in the server log)."""
    return _error("internal_error", "An internal error occurred.")


def _with_id(message: dict[str, Any], client_id: Any) -> dict[str, Any]:
    return {**message, "id": client_id} if client_id is not None else message


async def _open(request: web.Request, hello: dict[str, Any]) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(heartbeat=HEARTBEAT_S, max_msg_size=MAX_MESSAGE_BYTES)
    await ws.prepare(request)
    await ws.send_json(hello)
    return ws


async def _messages(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The client's well-formed messages until it closes; malformed frames get an error reply."""
    async for msg in ws:
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            return
        data, problem = _parse(msg)
        if data is None:
            await ws.send_json({"type": "error", "error": problem})
            continue
        yield data


def _parse(msg: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(message, None) or (None, error) for one received frame."""
    if msg.type != WSMsgType.TEXT:
        return None, _error("invalid_request", "Send JSON text frames.")
    try:
        data = json.loads(msg.data)
    except json.JSONDecodeError as exc:
        return None, _error("invalid_json", "The message is not valid JSON.", exc.msg)
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        return None, _error("invalid_request", "A message is a JSON object with a 'type'.")
    return data, None


# -- agents ---------------------------------------------------------------------------------


async def agent_socket(request: web.Request, state: ServerState, agent: str, instance_id: str) -> web.WebSocketResponse:
    ws = await _open(request, {"type": "ready", "agent": agent, "instanceId": instance_id})
    current: asyncio.Task[None] | None = None
    try:
        async for data in _messages(ws):
            client_id = data.get("id")
            if data["type"] != "prompt":
                await ws.send_json(_with_id(
                    {"type": "error", "error": _error("invalid_request", f"Unknown message type {data['type']!r}.",
                                                      "An agent socket accepts 'prompt' messages.")},
                    client_id,
                ))
                continue
            if current is not None and not current.done():
                await ws.send_json(_with_id(
                    {"type": "error", "error": _error("prompt_in_progress", "A prompt is already in progress.",
                                                      "Wait for its result before sending the next prompt.")},
                    client_id,
                ))
                continue
            try:
                body = AgentPrompt.model_validate({k: v for k, v in data.items() if k not in ("type", "id")})
            except ValidationError as exc:
                await ws.send_json(_with_id(
                    {"type": "error", "error": _error("invalid_request", "The prompt is invalid.",
                                                      validation_details(exc))},
                    client_id,
                ))
                continue
            current = asyncio.create_task(
                _quietly(_prompt(ws, state, agent, instance_id, body, client_id), ws, client_id)
            )
    finally:
        # the submission is durable and keeps running; only the forwarding stops
        if current is not None and not current.done():
            current.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await current
    return ws


async def _prompt(
    ws: web.WebSocketResponse, state: ServerState, agent: str, instance_id: str, body: AgentPrompt, client_id: Any
) -> None:
    runtime = state.runtime
    path = instance_path(agent, instance_id)
    try:
        sub, offset = await runtime.coordinator.admit_prompt(
            agent, instance_id, body.message, images=body.image_dicts(), session=body.session or "default"
        )
    except AgentNotFound:
        await ws.send_json(_with_id({"type": "error", "error": _error("agent_not_found", f'Agent "{agent}" is not registered.')}, client_id))
        return
    sid = sub.submission_id
    await ws.send_json(_with_id({"type": "admitted", "submissionId": sid, "offset": offset}, client_id))
    async for event, after in follow_stream(runtime.stores.streams, path, offset):
        if event.get("submissionId") != sid:
            continue  # another socket's or a dispatch's activity on the same instance
        await ws.send_json(_with_id({"type": "event", "offset": after, "event": event}, client_id))
        if event.get("type") == "submission_settled":
            if event.get("status") == "completed":
                await ws.send_json(_with_id({"type": "result", "submissionId": sid, "result": event.get("result")}, client_id))
            else:
                # typed like ?wait=result: Flue's own errors keep their type, others are internal_error
                failed = failure(event.get("error") or {}, "The prompt failed.")
                await ws.send_json(_with_id(
                    {"type": "error", "submissionId": sid, "error": _error(failed.type, failed.message, failed.details)},
                    client_id,
                ))
            return


# -- workflows ------------------------------------------------------------------------------


async def workflow_socket(request: web.Request, state: ServerState, workflow: str) -> web.WebSocketResponse:
    from flue.runtime.workflows import InvalidPayload, WorkflowNotFound, run_stream_path, start_run

    ws = await _open(request, {"type": "ready", "workflow": workflow})
    forward: asyncio.Task[None] | None = None
    try:
        async for data in _messages(ws):
            if forward is not None:
                await ws.send_json({"type": "error", "error": _error(
                    "invalid_request", "This socket already invoked the workflow.",
                    "A workflow socket carries one invocation; open a new socket for another.")})
                continue
            if data["type"] != "invoke":
                await ws.send_json({"type": "error", "error": _error(
                    "invalid_request", f"Unknown message type {data['type']!r}.",
                    "A workflow socket accepts one 'invoke' message.")})
                continue
            payload = data.get("payload")
            payload = {} if payload is None else payload
            if not isinstance(payload, dict):
                await ws.send_json({"type": "error", "error": _error("invalid_request", "The payload must be a JSON object.")})
                continue
            try:
                handle = await start_run(state.runtime, workflow, payload, req=request)
            except InvalidPayload as exc:
                await ws.send_json({"type": "error", "error": _error(
                    "invalid_request", "The payload does not match the workflow's schema.", str(exc))})
                continue
            except WorkflowNotFound:  # removed by a reload since the handshake
                await ws.send_json({"type": "error", "error": _error(
                    "workflow_not_found", f'Workflow "{workflow}" is not registered.')})
                continue
            except Exception:
                # an HTTP error response cannot follow the upgrade; say it in a frame instead
                log.exception("starting workflow %r from a socket failed", workflow)
                await ws.send_json({"type": "error", "error": _internal()})
                continue
            state.track_run(handle.task)
            await ws.send_json({
                "type": "admitted", "runId": handle.run_id,
                "streamUrl": run_stream_url(request, handle.run_id), "offset": "-1",
            })
            forward = asyncio.create_task(
                _quietly(_forward_run(ws, state, handle.run_id, run_stream_path(handle.run_id)), ws, close=True)
            )
    finally:
        if forward is not None and not forward.done():
            forward.cancel()  # the run itself continues; only forwarding stops
            with contextlib.suppress(asyncio.CancelledError):
                await forward
    return ws


async def _forward_run(ws: web.WebSocketResponse, state: ServerState, run_id: str, path: str) -> None:
    async for event, after in follow_stream(state.runtime.stores.streams, path, "-1"):
        await ws.send_json({"type": "event", "offset": after, "event": event})
        if event.get("type") == "run_end":
            if event.get("isError"):
                # typed like ?wait=result; what went wrong is in the run_end event just forwarded
                failed = failure(event.get("error") or {}, "The workflow run failed.",
                                 "The run's events, ending with run_end, were sent above.")
                await ws.send_json({"type": "error", "runId": run_id,
                                    "error": _error(failed.type, failed.message, failed.details)})
            else:
                await ws.send_json({"type": "result", "runId": run_id, "result": event.get("result")})
            await ws.close()
            return


async def _quietly(coro: Any, ws: web.WebSocketResponse, client_id: Any = None, *, close: bool = False) -> None:
    """Run a forwarding coroutine. A client that went away mid-send is not an error; any other
    failure (a store gone away...) is logged and told to the client, so it does not wait forever."""
    try:
        await coro
    except (ConnectionResetError, RuntimeError) as exc:
        log.debug("websocket forwarding stopped: %r", exc)
    except Exception:
        log.exception("websocket forwarding failed")
        with contextlib.suppress(ConnectionResetError, RuntimeError):
            await ws.send_json(_with_id({"type": "error", "error": _internal()}, client_id))
            if close:  # a workflow socket has nothing more to say; an agent socket takes the next prompt
                await ws.close()
