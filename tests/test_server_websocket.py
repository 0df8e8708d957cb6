"""WebSockets on ``/agents/<name>/<id>`` (sequential prompts) and ``/workflows/<name>``
(one invocation): Flue's socket protocol (flue-reference.md 8.10), as documented in
flue/server/websocket.py, and the Python client's ``connect()`` over it."""

from __future__ import annotations

import asyncio
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from fixtures.server.support import scratch_project, served

from flue.client import FlueClient
from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.scripted import ScriptedTurn

pytest_plugins = ["flue.testing.pytest_plugin"]

TYPED_WORKFLOW = textwrap.dedent(
    """
    http: true
    agent: assistant
    payload: {type: object, required: [person], properties: {person: {type: string}}}
    steps:
      - prompt: "About {{ payload.person }}"
    return: "{{ steps[0] }}"
    """
)


async def receive_until(ws: Any, kinds: set[str], timeout: float = 10.0) -> list[dict[str, Any]]:
    """Messages up to and including the first whose type is in ``kinds``."""
    out = []
    async with asyncio.timeout(timeout):
        while True:
            msg = await ws.receive_json()
            out.append(msg)
            if msg["type"] in kinds:
                return out


async def test_agent_socket_sequential_prompts(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("Hi Ada."), ScriptedTurn(text="You are Ada, as you said.", delay=0.1), reply("Third."))
    root = scratch_project(tmp_path, model.url)
    async with served(root) as srv:
        c = srv.client
        ws = await c.ws_connect("/agents/assistant/w1")
        assert await ws.receive_json(timeout=5) == {
            "version": 1, "type": "ready", "target": "agent", "name": "assistant", "instanceId": "w1"}

        await ws.send_json({"version": 1, "type": "prompt", "message": "I am Ada.", "requestId": "p1"})
        first = await receive_until(ws, {"result", "error"})
        started, *events, result = first
        assert started["type"] == "started" and started["requestId"] == "p1" and started["offset"] == "-1"
        assert all(m["type"] == "event" and m["requestId"] == "p1" and m["version"] == 1 for m in events)
        assert events[0]["event"]["type"] == "submission_admitted"
        assert events[-1]["event"]["type"] == "submission_settled"
        assert result["type"] == "result" and result["requestId"] == "p1"
        assert result["submissionId"] == started["submissionId"] and result["result"]["text"] == "Hi Ada."
        assert set(result["result"]) == {"text", "usage", "model"}
        # each event's offset resumes the HTTP stream right after it
        after_first = events[-1]["offset"]
        resp = await c.get(f"/agents/assistant/w1?offset={events[0]['offset']}")
        assert [e["type"] for e in await resp.json()] == [m["event"]["type"] for m in events[1:]]

        # the second prompt continues the conversation; one in flight at a time
        await ws.send_json({"version": 1, "type": "prompt", "message": "Who am I?", "requestId": "p2"})
        await ws.send_json({"version": 1, "type": "prompt", "message": "too soon", "requestId": "p3"})
        second = await receive_until(ws, {"result"})
        refusals = [m for m in second if m["type"] == "error"]
        assert refusals == [{"version": 1, "type": "error", "requestId": "p3", "error": {
            "type": "prompt_in_progress", "message": "A prompt is already in progress.",
            "details": "Wait for its result before sending the next prompt."}}]
        (started2,) = [m for m in second if m["type"] == "started"]
        assert started2["requestId"] == "p2" and started2["offset"] == after_first
        assert second[-1]["requestId"] == "p2" and second[-1]["result"]["text"] == "You are Ada, as you said."

        # malformed and unknown messages get errors; the socket stays open
        await ws.send_str("{not json")
        err = await ws.receive_json(timeout=5)
        assert err["error"]["message"] == "WebSocket messages must be valid JSON objects."
        await ws.send_json({"version": 1, "type": "shout", "requestId": 7})
        msg = await ws.receive_json(timeout=5)
        assert msg["requestId"] == 7 and msg["error"]["type"] == "invalid_request"
        await ws.send_json({"version": 1, "type": "prompt", "message": ["not", "text"]})
        assert (await ws.receive_json(timeout=5))["error"]["type"] == "invalid_request"
        await ws.send_json({"version": 1, "type": "prompt", "message": "x", "session": "task:sneaky"})
        assert "task:" in (await ws.receive_json(timeout=5))["error"]["details"]
        await ws.send_json({"version": 2, "type": "ping"})
        assert (await ws.receive_json(timeout=5))["error"]["type"] == "invalid_request"
        await ws.send_json({"version": 1, "type": "ping", "requestId": "hb"})
        assert await ws.receive_json(timeout=5) == {"version": 1, "type": "pong", "requestId": "hb"}

        await ws.send_json({"version": 1, "type": "prompt", "message": "And a third.", "session": "other"})
        third = await receive_until(ws, {"result"})
        assert "requestId" not in third[-1] and third[-1]["result"]["text"] == "Third."

        # a binary frame: an error, then the server closes the socket with 1003
        await ws.send_bytes(b"binary")
        assert (await ws.receive_json(timeout=5))["error"]["type"] == "invalid_request"
        async with asyncio.timeout(5):
            await ws.receive()
        assert ws.close_code == 1003

    history = [(m["role"], m["content"]) for m in model.requests[1]["messages"] if m["role"] != "system"]
    assert history == [("user", "I am Ada."), ("assistant", "Hi Ada."), ("user", "Who am I?")]
    # session "other" starts fresh
    assert [m["role"] for m in model.requests[2]["messages"] if m["role"] != "system"] == ["user"]
    assert len(model.requests) == 3  # the refused prompt never reached the model


async def test_closing_the_socket_does_not_cancel_the_prompt(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(ScriptedTurn(text="finished anyway", delay=0.05))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        ws = await c.ws_connect("/agents/assistant/gone")
        await ws.receive_json(timeout=5)
        await ws.send_json({"version": 1, "type": "prompt", "message": "hello"})
        started = await ws.receive_json(timeout=5)
        assert started["type"] == "started"
        await ws.close()
        settled = await srv.runtime.coordinator.wait(started["submissionId"], timeout=10)
        assert settled.status == "completed" and settled.result["text"] == "finished anyway"


async def test_the_python_client_connects_to_agents_and_workflows(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    scripted_model_server.add(reply("Hello Ada."), reply("Still Ada."))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv, FlueClient(srv.base) as flue:
        seen: list[str] = []
        async with flue.agents.connect("assistant", "c1", session="support") as chat:
            assert chat.hello == {"version": 1, "type": "ready", "target": "agent", "name": "assistant",
                                  "instanceId": "c1"}
            first = await chat.prompt("I am Ada.", on_event=lambda e: seen.append(e["type"]))
            second = await chat.prompt("Who am I?")
        assert first.text == "Hello Ada." and second.text == "Still Ada." and second.model.id == "chat-model"
        assert seen[0] == "submission_admitted" and seen[-1] == "submission_settled" and "text_delta" in seen
        # both prompts ran in the session the connection named
        assert [m["content"] for m in scripted_model_server.requests[1]["messages"] if m["role"] == "user"] == [
            "I am Ada.", "Who am I?"]
        record = await srv.runtime.stores.sessions.load("agents/assistant/c1/default/support")
        assert record is not None and len(record.messages) == 4

        job = flue.workflows.connect("echo")
        await job.ready
        result = await job.invoke({"k": "v"})
        assert result == {"payload": {"k": "v"}, "run": job.run_id}
        await job.close()

        # a custom mount path and a URL hook shape the socket URL (a signed handshake)
        hooked = FlueClient(srv.base, websocket_base_path="/nowhere",
                            websocket_url=lambda url: url.update_query(token="t"))
        assert hooked.socket_url("agents/a/b").endswith("/nowhere/agents/a/b?token=t")
        assert hooked.socket_url("agents/a/b").startswith("ws://")
        await hooked.aclose()


async def test_socket_routes_refuse_what_http_refuses(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        for path in ("/agents/internal/x", "/agents/missing/x", "/workflows/private", "/workflows/missing"):
            with pytest.raises(WSServerHandshakeError) as info:
                await srv.client.ws_connect(path)
            assert info.value.status == 404, path


async def test_workflow_socket_one_invocation(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        ws = await srv.client.ws_connect("/workflows/echo")
        assert await ws.receive_json(timeout=5) == {"version": 1, "type": "ready", "target": "workflow", "name": "echo"}
        await ws.send_json({"version": 1, "type": "start"})
        assert (await ws.receive_json(timeout=5))["error"]["type"] == "invalid_request"

        await ws.send_json({"version": 1, "type": "invoke", "requestId": "r1", "payload": {"k": "v"}})
        messages = await receive_until(ws, {"result", "error"})
        started, *events, result = messages
        assert started["type"] == "started" and started["offset"] == "-1" and started["requestId"] == "r1"
        run_id = started["runId"]
        assert started["streamUrl"] == srv.url(f"/runs/{run_id}")
        assert all(m["runId"] == run_id and m["requestId"] == "r1" for m in events)
        types = [m["event"]["type"] for m in events]
        assert types[0] == "run_start" and types[-1] == "run_end"
        assert result == {"version": 1, "type": "result", "requestId": "r1", "runId": run_id,
                          "result": {"payload": {"k": "v"}, "run": run_id}}
        # then the server closes the socket, normally
        async with asyncio.timeout(5):
            closing = await ws.receive()
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)
        assert ws.close_code == 1000

        record = await (await srv.client.get(f"/runs/{run_id}?meta")).json()
        assert record["status"] == "completed"

        # a second invoke on one socket: an error, then close 1008
        ws = await srv.client.ws_connect("/workflows/gated")
        await ws.receive_json(timeout=5)
        await ws.send_json({"version": 1, "type": "invoke", "payload": {"gate": str(tmp_path / "never")}})
        assert (await ws.receive_json(timeout=5))["type"] == "started"
        await ws.send_json({"version": 1, "type": "invoke", "requestId": "again"})
        async with asyncio.timeout(5):
            while True:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    break
                frame = json.loads(msg.data)
                if frame["type"] == "error":
                    assert frame["requestId"] == "again"
                    assert frame["error"]["message"] == "Workflow WebSocket connections accept one invocation only."
        assert ws.close_code == 1008


async def test_workflow_socket_bad_payload_then_failure(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url, {"workflows/typed.yaml": TYPED_WORKFLOW})
    async with served(root) as srv:
        ws = await srv.client.ws_connect("/workflows/typed")
        await ws.receive_json(timeout=5)
        await ws.send_json({"version": 1, "type": "invoke", "payload": {"nobody": 1}})
        err = await ws.receive_json(timeout=5)
        assert err["type"] == "error" and err["error"]["type"] == "invalid_request" and "person" in err["error"]["details"]
        assert not ws.closed
        await ws.close()

        ws = await srv.client.ws_connect("/workflows/boom")
        await ws.receive_json(timeout=5)
        await ws.send_json({"version": 1, "type": "invoke"})
        messages = await receive_until(ws, {"result", "error"})
        assert messages[-2]["event"]["type"] == "run_end" and messages[-2]["event"]["isError"] is True
        assert messages[-1]["type"] == "error" and messages[-1]["error"]["type"] == "internal_error"
        assert "hunter2" not in json.dumps(messages[-1])  # the error frame, like the HTTP envelope, hides it
        assert messages[-1]["runId"] == messages[0]["runId"]
        async with asyncio.timeout(5):
            await ws.receive()
        assert ws.close_code == 1000


async def test_agent_socket_failed_prompt_is_typed(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(*[ScriptedTurn(error_status=400, error_message="provider says no")] * 3)
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        ws = await srv.client.ws_connect("/agents/assistant/f1")
        await ws.receive_json(timeout=5)
        await ws.send_json({"version": 1, "type": "prompt", "message": "hi", "requestId": "x"})
        messages = await receive_until(ws, {"result", "error"}, timeout=20)
        assert messages[-2]["event"] == {**messages[-2]["event"], "type": "submission_settled", "outcome": "failed"}
        last = messages[-1]
        assert last["type"] == "error" and last["requestId"] == "x" and last["error"]["type"] == "operation_failed"
        await ws.close()


# Persistence whose event-stream reads fail once the marker file exists: the socket's forwarding
# breaks while the prompt itself (admission, the run, settlement) keeps working.
FLAKY_READS_PLUGIN = '''
import os
from pathlib import Path

from flue import hookimpl
from flue.persistence.sqlite import SQLiteAdapter


class FlakyReads(SQLiteAdapter):
    async def connect(self):
        stores = await super().connect()
        read = stores.streams.read_events

        async def read_events(path, offset="-1", limit=None):
            if Path(os.environ["FLUE_FLAKY_MARKER"]).exists():
                raise OSError("the disk went away")
            return await read(path, offset, limit)

        stores.streams.read_events = read_events
        return stores


@hookimpl
def flue_persistence(config, root):
    return FlakyReads() if config.kind == "flaky" else None
'''


async def test_a_store_failure_while_forwarding_is_told_to_the_client(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "break-reads"
    monkeypatch.setenv("FLUE_FLAKY_MARKER", str(marker))
    scripted_model_server.add(reply("slowly", delay=0.2), reply("fine again"))
    root = scratch_project(
        tmp_path, scripted_model_server.url, {"plugins/flaky.py": FLAKY_READS_PLUGIN}, config="persistence: {kind: flaky}\n"
    )
    async with served(root) as srv:
        ws = await srv.client.ws_connect("/agents/assistant/w1")
        await ws.receive_json(timeout=5)
        marker.write_text("")
        await ws.send_json({"version": 1, "type": "prompt", "message": "one", "requestId": "p1"})
        messages = await receive_until(ws, {"result", "error"})
        assert messages[-1] == {"version": 1, "type": "error", "requestId": "p1", "error": {
            "type": "internal_error", "message": "An internal error occurred.",
            "details": "The server encountered an unexpected error while handling this request."}}
        assert "disk" not in json.dumps(messages)
        marker.unlink()  # the socket stays usable for the next prompt
        await asyncio.sleep(0.5)
        await ws.send_json({"version": 1, "type": "prompt", "message": "two", "requestId": "p2"})
        messages = await receive_until(ws, {"result", "error"})
        assert messages[-1]["type"] == "result" and messages[-1]["result"]["text"] == "fine again"
        await ws.close()
