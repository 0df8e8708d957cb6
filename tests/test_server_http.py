"""The HTTP API end to end, in process: admission, ?wait=result, agent and run streams,
conversation continuity, live reads, prefix mounts and /openapi.json.

The server is the real application (``make_app``) over the real runtime and an
in-memory SQLite store, serving a scratch project whose model is the scripted
OpenAI-compatible server; requests go over loopback HTTP.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from durable_streams import astream
from fixtures.server.support import read_sse_until, scratch_project, served, until, wait_for_file

from flue.testing import event_types, reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

RUN_ID = r"^run_[0-9A-HJKMNP-TV-Z]{26}$"


async def read_run(url: str, live: str) -> list[dict]:
    """A run's events through the PyPI durable-streams client, up to run_end.

    (That client predates Stream-Closed and would tail a closed stream forever.)"""
    events = []
    async with astream(url, offset="-1", live=live) as res:  # type: ignore[arg-type]
        async for event in res.iter_json():
            events.append(event)
            if event["type"] == "run_end":
                return events
    return events


async def test_workflow_wait_result_and_admission(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        resp = await c.post("/workflows/echo?wait=result", json={"a": 1})
        assert resp.status == 200
        body = await resp.json()
        assert body["result"] == {"payload": {"a": 1}, "run": body["runId"]}
        assert body["streamUrl"] == srv.url(f"/runs/{body['runId']}") and body["offset"] == "-1"
        assert resp.headers["Location"] == body["streamUrl"]

        # empty body = {}
        resp = await c.post("/workflows/echo?wait=result")
        assert resp.status == 200 and (await resp.json())["result"]["payload"] == {}

        resp = await c.post("/workflows/echo", json={"b": 2})
        assert resp.status == 202
        admitted = await resp.json()
        assert set(admitted) == {"runId", "streamUrl", "offset"}
        assert admitted["offset"] == "-1" and resp.headers["Stream-Next-Offset"] == "-1"
        assert resp.headers["Location"] == admitted["streamUrl"] == srv.url(f"/runs/{admitted['runId']}")
        assert re.match(RUN_ID, admitted["runId"])

        # the stream replays the run and is closed after run_end
        async with asyncio.timeout(10):
            events = await read_run(admitted["streamUrl"], "sse")
        assert events[0]["type"] == "run_start" and events[0]["payload"] == {"b": 2}
        assert events[-1]["type"] == "run_end" and events[-1]["isError"] is False
        assert events[-1]["result"] == {"payload": {"b": 2}, "run": admitted["runId"]}
        assert any(e["type"] == "log" and e["message"] == "echoing" for e in events)


async def test_workflow_with_model_through_http(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(reply("Hello, Ada!"))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        resp = await srv.client.post("/workflows/greet?wait=result", json={"name": "Ada"})
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["result"] == {"greeting": "Hello, Ada!"}
    assert scripted_model_server.requests[0]["messages"][-1] == {"role": "user", "content": "Greet Ada."}


async def test_agent_prompt_stream_and_conversation(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("Nice to meet you, Ada."), reply("Your name is Ada."))
    root = scratch_project(tmp_path, model.url)
    async with served(root) as srv:
        c = srv.client
        # no stream before the first admitted prompt; a failed admission creates none
        assert (await c.get("/agents/assistant/u-1?offset=-1")).status == 404
        assert (await c.post("/agents/assistant/u-1", json={"nope": 1})).status == 400
        assert (await c.get("/agents/assistant/u-1?offset=-1")).status == 404

        resp = await c.post("/agents/assistant/u-1", json={"message": "My name is Ada."})
        assert resp.status == 202
        first = await resp.json()
        assert set(first) == {"streamUrl", "offset", "submissionId"}
        assert first["streamUrl"] == srv.url("/agents/assistant/u-1") == resp.headers["Location"]
        assert first["offset"] == "-1" == resp.headers["Stream-Next-Offset"]

        # GET on the streamUrl (SSE, the independent client) delivers the prompt's events
        events: list[dict] = []
        async with asyncio.timeout(10):
            async with astream(first["streamUrl"], offset=first["offset"], live="sse") as res:
                async for event in res.iter_json():
                    events.append(event)
                    if event["type"] == "submission_settled":
                        break
        assert events[0]["type"] == "submission_admitted"
        assert events[0]["submissionId"] == first["submissionId"]
        assert events[0]["input"]["message"] == "My name is Ada."
        # Flue's sequence for a durable agent submission (flue-reference.md 7.2): no user message
        # events (the input is submission_admitted, ours), no turn_request on a stream
        assert event_types(events) == [
            "submission_admitted", "operation_start", "agent_start", "turn_start", "message_start", "text_delta",
            "message_end", "turn_messages", "turn", "agent_end", "operation", "idle", "submission_settled",
        ]
        text = "".join(e["text"] for e in events if e["type"] == "text_delta")
        assert text == "Nice to meet you, Ada."
        assert [e["eventIndex"] for e in events] == list(range(len(events))) and {e["v"] for e in events} == {3}
        assert all(e["instanceId"] == "u-1" and e["agentName"] == "assistant" for e in events)
        assert events[-1]["outcome"] == "completed" and events[-1]["result"]["text"] == "Nice to meet you, Ada."
        assert events[-1]["result"]["usage"] == events[-3]["usage"]
        assert all(e["submissionId"] == first["submissionId"] for e in events)

        # the second prompt continues the conversation; its offset starts after the first exchange
        resp = await c.post("/agents/assistant/u-1?wait=result", json={"message": "What is my name?"})
        assert resp.status == 200
        second = await resp.json()
        assert second["result"]["text"] == "Your name is Ada."
        assert second["streamUrl"] == first["streamUrl"] and second["submissionId"] != first["submissionId"]
        assert second["offset"] not in ("-1", first["offset"])
        resp = await c.get(f"/agents/assistant/u-1?offset={second['offset']}")
        replay = await resp.json()
        assert replay[0]["type"] == "submission_admitted" and replay[0]["submissionId"] == second["submissionId"]

    first_request, second_request = model.requests
    convo = [(m["role"], m.get("content")) for m in second_request["messages"] if m["role"] != "system"]
    assert convo == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
    ]
    assert [m["role"] for m in first_request["messages"] if m["role"] != "system"] == ["user"]


async def test_instances_are_separate(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("one"), reply("two"))
    root = scratch_project(tmp_path, model.url)
    async with served(root) as srv:
        for instance in ("a", "b"):
            resp = await srv.client.post(f"/agents/assistant/{instance}?wait=result", json={"message": instance})
            assert resp.status == 200
    assert [m["role"] for m in model.requests[1]["messages"] if m["role"] != "system"] == ["user"]


async def test_run_meta_replay_and_head(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        run_id = (await (await c.post("/workflows/echo?wait=result", json={"x": "y"})).json())["runId"]

        resp = await c.get(f"/runs/{run_id}?meta")
        assert resp.status == 200 and resp.content_type == "application/json"
        record = await resp.json()
        assert record["runId"] == run_id and record["workflowName"] == "echo" and record["status"] == "completed"
        assert record["payload"] == {"x": "y"} == record["input"] and record["result"]["payload"] == {"x": "y"}
        assert record["isError"] is False and "error" not in record
        assert record["startedAt"] and record["endedAt"] and record["durationMs"] >= 0
        # stream parameters are ignored with ?meta
        assert (await (await c.get(f"/runs/{run_id}?meta&offset=bogus&live=sse")).json()) == record

        resp = await c.get(f"/runs/{run_id}?offset=-1")
        assert resp.status == 200
        events = await resp.json()
        assert [e["type"] for e in events][0] == "run_start" and events[-1]["type"] == "run_end"
        assert resp.headers["Stream-Closed"] == "true" and resp.headers["Stream-Up-To-Date"] == "true"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
        tail = await (await c.get(f"/runs/{run_id}?offset=-1&tail=1")).json()
        assert tail == events[-1:]

        head = await c.head(f"/runs/{run_id}")
        assert head.status == 200 and head.headers["Stream-Closed"] == "true"
        assert head.headers["Stream-Next-Offset"] == resp.headers["Stream-Next-Offset"]
        # HEAD answers with what the full catch-up GET gave: its ETag, up to date
        assert head.headers["ETag"] == resp.headers["ETag"] and head.headers["Stream-Up-To-Date"] == "true"

        # an errored run: record and stream both say so
        resp = await c.post("/workflows/boom")
        boom = await resp.json()
        async with asyncio.timeout(10):
            events = await read_run(boom["streamUrl"], "long-poll")
        assert events[-1]["type"] == "run_end" and events[-1]["isError"] is True
        assert events[-1]["error"]["name"] == "ValueError" and events[-1]["result"] is None
        record = await (await c.get(f"/runs/{boom['runId']}?meta")).json()
        assert record["status"] == "errored" and record["error"]["name"] == "ValueError" and record["isError"]


async def test_live_sse_and_long_poll_deliver_later_appends(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        c = srv.client
        gate = tmp_path / "gate"
        admitted = await (await c.post("/workflows/gated", json={"gate": str(gate)})).json()
        run_id = admitted["runId"]
        await wait_for_file(Path(str(gate) + ".started"))

        async def waiting_logged() -> str:
            async with asyncio.timeout(10):
                while True:
                    resp = await c.get(f"/runs/{run_id}?offset=-1")
                    events = await resp.json()
                    if any(e.get("message") == "waiting" for e in events):
                        return resp.headers["Stream-Next-Offset"]
                    await asyncio.sleep(0.02)

        tail = await waiting_logged()

        # both live reads start at the tail, before the run appends anything more
        sse = await c.get(f"/runs/{run_id}?offset={tail}&live=sse")
        assert sse.status == 200 and sse.headers["Content-Type"].startswith("text/event-stream")
        first = await read_sse_until(sse, lambda f: len(f) >= 1)
        assert first[0][0] == "control" and first[0][1]["upToDate"] is True
        assert first[0][1]["streamNextOffset"] == tail
        long_poll = asyncio.create_task(c.get(f"/runs/{run_id}?offset={tail}&live=long-poll"))
        # the server holds both reads (ServerState tracks them) before the run goes on
        await until(lambda: len(srv.state.readers) == 2)
        assert not long_poll.done()  # nothing to answer with until the gate opens

        gate.write_text("open")

        async with asyncio.timeout(10):
            resp = await long_poll
        assert resp.status == 200
        polled = await resp.json()
        assert polled[0]["type"] == "log" and polled[0]["message"] == "released"

        frames = await read_sse_until(sse, lambda f: any(d.get("streamClosed") for e, d in f if e == "control"))
        data = [e for kind, batch in frames if kind == "data" for e in batch]
        assert [e["type"] for e in data][0] == "log" and data[0]["message"] == "released"
        assert data[-1]["type"] == "run_end" and data[-1]["result"] == {"released": True}
        assert frames[-1] == ("control", {"streamNextOffset": frames[-1][1]["streamNextOffset"],
                                          "streamClosed": True, "upToDate": True})
        sse.close()

        # long-poll at the tail of a closed stream: 204 at once, saying it is closed
        end = (await c.get(f"/runs/{run_id}?offset=-1")).headers["Stream-Next-Offset"]
        resp = await c.get(f"/runs/{run_id}?offset={end}&live=long-poll")
        assert resp.status == 204 and resp.headers["Stream-Closed"] == "true"


async def test_agent_stream_live_sse_sees_a_later_prompt(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    model = scripted_model_server
    model.add(reply("first"), reply("second"))
    root = scratch_project(tmp_path, model.url)
    async with served(root) as srv:
        c = srv.client
        done = await (await c.post("/agents/assistant/live?wait=result", json={"message": "one"})).json()
        tail = (await c.get("/agents/assistant/live?offset=-1")).headers["Stream-Next-Offset"]
        assert done["result"]["text"] == "first"
        sse = await c.get(f"/agents/assistant/live?offset={tail}&live=sse")
        await read_sse_until(sse, lambda f: len(f) >= 1)
        second = await (await c.post("/agents/assistant/live", json={"message": "two"})).json()
        assert second["offset"] == tail
        frames = await read_sse_until(
            sse, lambda f: any(e["type"] == "submission_settled" for k, b in f if k == "data" for e in b)
        )
        events = [e for kind, batch in frames if kind == "data" for e in batch]
        assert {e["submissionId"] for e in events} == {second["submissionId"]}
        assert "".join(e["text"] for e in events if e["type"] == "text_delta") == "second"
        sse.close()


async def test_prefix_mount(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(reply("hi"))
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root, prefix="/api/") as srv:
        c = srv.client
        resp = await c.post("/api/workflows/echo", json={})
        assert resp.status == 202
        admitted = await resp.json()
        assert admitted["streamUrl"] == srv.url(f"/api/runs/{admitted['runId']}")
        # the coordinator runs under a prefix too (the sub-app's startup hook)
        resp = await c.post("/api/agents/assistant/p1?wait=result", json={"message": "hello"})
        body = await resp.json()
        assert body["streamUrl"] == srv.url("/api/agents/assistant/p1") and body["result"]["text"] == "hi"
        async with asyncio.timeout(10):
            assert (await read_run(admitted["streamUrl"], "sse"))[-1]["type"] == "run_end"
        # outside the prefix: the envelope, not aiohttp's text 404
        resp = await c.post("/workflows/echo", json={})
        assert resp.status == 404 and (await resp.json())["error"]["type"] == "route_not_found"
        doc = await (await c.get("/api/openapi.json")).json()
        assert doc["servers"] == [{"url": "/api"}]


async def test_openapi_document(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    root = scratch_project(tmp_path, scripted_model_server.url)
    async with served(root) as srv:
        resp = await srv.client.get("/openapi.json")
        assert resp.status == 200
        doc = await resp.json()
        head = await srv.client.head("/openapi.json")
        assert head.status == 200 and head.headers["Content-Type"].startswith("application/json")
    assert doc["openapi"].startswith("3.")
    from flue.version import __version__

    assert doc["info"]["version"] == __version__
    agent_op = doc["paths"]["/agents/{name}/{id}"]["post"]
    workflow_op = doc["paths"]["/workflows/{name}"]["post"]
    assert agent_op["operationId"] == "invokeAgent" and workflow_op["operationId"] == "invokeWorkflow"
    for op in (agent_op, workflow_op):
        assert op["x-flue-invocation-modes"] == ["accepted", "wait-result"]
        assert {"200", "202", "400", "404", "405", "413", "415", "429", "500", "501", "503"} <= set(op["responses"])
        assert any(p["name"] == "wait" and p["in"] == "query" for p in op["parameters"])
    # only HTTP-exposed names are listed
    names = {p["name"]: p for p in agent_op["parameters"]}
    assert names["name"]["schema"]["enum"] == ["assistant", "guarded"]
    wf_names = workflow_op["parameters"][0]["schema"]["enum"]
    assert "private" not in wf_names and {"echo", "boom", "gated", "guarded"} <= set(wf_names)
    assert agent_op["requestBody"]["required"] is True and workflow_op["requestBody"]["required"] is False
    assert set(doc["paths"]) == {"/agents/{name}/{id}", "/workflows/{name}", "/health"}
    assert doc["paths"]["/health"]["get"]["operationId"] == "getHealth"
    assert "bearer" in doc["components"]["securitySchemes"]


async def test_health(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    """``GET /health`` answers 200 without auth (the project has guarded agents), under a prefix too."""
    from flue.version import __version__

    root = scratch_project(tmp_path, scripted_model_server.url)
    for prefix in ("", "/api"):
        async with served(root, prefix=prefix) as srv:
            resp = await srv.client.get(f"{prefix}/health")
            assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
            assert await resp.json() == {"status": "ok", "version": __version__}
            head = await srv.client.head(f"{prefix}/health")
            assert head.status == 200 and head.headers["Content-Type"].startswith("application/json")
            resp = await srv.client.post(f"{prefix}/health", json={})
            assert resp.status == 405 and resp.headers["Allow"] == "GET, HEAD"
            assert (await resp.json())["error"]["type"] == "method_not_allowed"
    assert not scripted_model_server.requests  # a probe never reaches a model

