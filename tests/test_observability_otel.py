"""The flue-opentelemetry plugin end to end: a real ``flue start`` exporting OTLP/HTTP to a local receiver.

The receiver is an aiohttp server decoding the protobuf export requests
(``ExportTraceServiceRequest``, ``ExportMetricsServiceRequest``). The project
configures the plugin in ``flue.yaml`` (``plugins: {opentelemetry: {endpoint}}``);
the batch delay comes from the standard ``OTEL_BSP_SCHEDULE_DELAY``, and the
metrics are flushed when the server stops (SIGTERM).

- One workflow run with one prompt and one bash call: ``flue.workflow`` →
  ``flue.operation prompt`` → two ``chat`` spans and a ``flue.tool bash`` span,
  with their parents, GenAI attributes, token counts and correlation ids; a
  `ctx.log` call is a `flue.log` span event without its message.
- A failing tool call: its span has status ERROR and an ``exception`` event.
- An HTTP prompt to an agent: ``flue.submission`` → operation → chat; a failing model
  call makes all three errors.
- No API key, prompt, answer or tool output anywhere in what was exported; the
  exporter's header (from flue.yaml) reaches the collector and is a known secret.
- Metrics: token counters, cost and duration histograms reach the receiver.

In process (a ``flue.init()`` harness's events projected onto an in-memory exporter):
with ``capture_content: true`` contents appear, scrubbed of a known secret; a
model's ``task`` call nests the task under its tool span. And: ``flue info``
lists the plugin without importing OpenTelemetry; observers that skip event types
are not called for them (the unconfigured plugin skips all, so ``turn_request``
is not built).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from flue_opentelemetry.projection import Projection
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import flue
from flue import redaction
from flue.testing import ScriptedModel, ScriptedModelServer, ScriptedTurn, calls, reply, tool_call
from flue.testing.server_process import FlueServerProcess

pytestmark = pytest.mark.slow
pytest_plugins = ["flue.testing.pytest_plugin"]

KEY = "sk-otel-test-4b7d19e2a6c03f58"  # the provider's key: sent to the model, never exported
QUESTION = "QUESTION-7f3a: what does the greeting file say?"
ANSWER = "ANSWER-2c9e: it says hello."
TOOL_OUTPUT = "TOOLOUT-5d1b"
AGENT_PROMPT = "PROMPT-8e4c: hi there"
EXPORT_KEY = "otlp-vendor-key-6a2f90c1d8"  # the collector's auth header, from flue.yaml
PRIVATE = (KEY, EXPORT_KEY, "LOGMSG-3e7a", QUESTION, "QUESTION-7f3a", ANSWER, "ANSWER-2c9e", TOOL_OUTPUT, AGENT_PROMPT, "PROMPT-8e4c")

ERROR = 2  # Status.STATUS_CODE_ERROR
CLIENT, INTERNAL = 3, 1  # Span.SpanKind


class Receiver:
    """An OTLP/HTTP collector on loopback that keeps what it is sent."""

    def __init__(self) -> None:
        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        self.raw: list[bytes] = []
        self.keys: set[str | None] = set()

    async def _traces(self, request: web.Request) -> web.Response:
        self.keys.add(request.headers.get("x-vendor-key"))
        body = await request.read()
        self.raw.append(body)
        self.traces.append(ExportTraceServiceRequest.FromString(body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.raw.append(body)
        self.metrics.append(ExportMetricsServiceRequest.FromString(body))
        return web.Response(body=b"", content_type="application/x-protobuf")

    def spans(self) -> list[tuple[dict[str, Any], Any]]:
        """(resource attributes, span) for every span received."""
        out = []
        for export in self.traces:
            for resource in export.resource_spans:
                res = attributes(resource.resource.attributes)
                out.extend((res, span) for scope in resource.scope_spans for span in scope.spans)
        return out

    def metric_points(self) -> dict[str, list[Any]]:
        """Every data point received, by metric name."""
        points: dict[str, list[Any]] = {}
        for export in self.metrics:
            for resource in export.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        data = getattr(metric, metric.WhichOneof("data"))
                        points.setdefault(metric.name, []).extend(data.data_points)
        return points


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    got = Receiver()
    app = web.Application()
    app.router.add_post("/v1/traces", got._traces)
    app.router.add_post("/v1/metrics", got._metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", got  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: value(kv.value) for kv in kvs}


def project(root: Path, model_url: str, endpoint: str) -> Path:
    files = {
        "flue.yaml": textwrap.dedent(f"""\
            model: scripted/chat-model
            providers:
              scripted: {{api: openai-completions, base_url: {model_url}, api_key_env: SCRIPTED_API_KEY,
                         cost: {{input: 3, output: 15}}}}
            plugins:
              opentelemetry:
                endpoint: {endpoint}
                service_name: otel-e2e
                headers: {{x-vendor-key: "${{VENDOR_KEY}}"}}
            """),
        ".env": f"SCRIPTED_API_KEY={KEY}\nVENDOR_KEY={EXPORT_KEY}\n",
        "workflows/leak.py": "import os\n\nhttp = True\n\n\nasync def run(ctx):\n    return os.environ['VENDOR_KEY']\n",
        "agents/helper.md": "---\ndescription: reads files\nhttp: true\ntools: [bash]\n---\nUse bash.\n",
        "workflows/ask.py": textwrap.dedent("""\
            http = True


            async def run(ctx):
                ctx.log.info("LOGMSG-3e7a asking", {"question": ctx.payload["question"]})
                harness = await ctx.init("helper")
                answer = await (await harness.session()).prompt(ctx.payload["question"])
                return {"text": answer.text}
            """),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


async def wait_for(check: Any, what: str, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


async def test_a_workflow_run_becomes_nested_genai_spans_and_metrics_over_otlp(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    model = scripted_model_server
    model.add(
        calls(tool_call("bash", {"command": f"echo {TOOL_OUTPUT}"}, id="call_ok"), prompt_tokens=120, completion_tokens=9),
        reply(ANSWER, prompt_tokens=150, completion_tokens=7),
        calls(tool_call("bash", {"no_command": True}, id="call_bad")),  # invalid arguments: a failed call
        reply("done"),
        reply("agent answer"),
        ScriptedTurn(error_status=400, error_message="bad request"),  # a failing model call
    )
    env = {"OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_METRIC_EXPORT_INTERVAL": "60000", "OTEL_SERVICE_NAME": "ignored"}
    async with receiver() as (endpoint, got):
        root = project(tmp_path / "p", model.url, endpoint)
        server = FlueServerProcess(root, env=env)
        async with server, aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.post(f"{server.url}/workflows/ask", params={"wait": "result"},
                                 json={"question": QUESTION}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"] == {"text": ANSWER}
                run_id = resp.headers["X-Flue-Run-Id"]
            async with http.post(f"{server.url}/workflows/ask", params={"wait": "result"},
                                 json={"question": "again"}) as resp:
                assert resp.status == 200, await resp.text()
                failing_run = resp.headers["X-Flue-Run-Id"]
            async with http.post(f"{server.url}/workflows/leak", params={"wait": "result"}) as resp:
                assert (await resp.json())["result"] == "[redacted]"  # the exporter's key is a known secret
            async with http.post(f"{server.url}/agents/helper/u1", params={"wait": "result"},
                                 json={"message": AGENT_PROMPT}) as resp:
                assert resp.status == 200, await resp.text()
            async with http.post(f"{server.url}/agents/helper/u2", params={"wait": "result"},
                                 json={"message": "fail, please"}) as resp:
                assert resp.status == 500, await resp.text()
            await wait_for(lambda: sum(s.name.startswith("flue.submission") for _, s in got.spans()) == 2,
                           f"the spans arrive while the server runs:\n{server.output()}")
        assert server.returncode is not None
        assert model.records[0].headers["authorization"] == f"Bearer {KEY}"  # the key was really used
        await wait_for(lambda: "flue.usage.tokens" in got.metric_points(), "metrics are flushed at shutdown")

    assert got.keys == {EXPORT_KEY}  # flue.yaml's headers went to the collector
    spans = got.spans()
    resources = {r.get("service.name") for r, _ in spans}
    assert resources == {"otel-e2e"}  # flue.yaml's service_name wins over OTEL_SERVICE_NAME
    by_id = {s.span_id: s for _, s in spans}
    run_spans = [s for _, s in spans if attributes(s.attributes).get("flue.run.id") == run_id]

    def one(name: str, among: list[Any] = run_spans) -> Any:
        found = [s for s in among if s.name == name]
        assert len(found) == 1, (name, [s.name for s in among])
        return found[0]

    workflow = one("flue.workflow ask")
    operation = one("flue.operation prompt")
    chats = sorted((s for s in run_spans if s.name == "chat chat-model"), key=lambda s: s.start_time_unix_nano)
    assert len(chats) == 2, [s.name for s in run_spans]
    tool = one("flue.tool bash")

    # run -> operation -> turn and tool spans, one trace
    assert workflow.parent_span_id == b"" and workflow.kind == INTERNAL
    assert operation.parent_span_id == workflow.span_id
    assert all(c.parent_span_id == operation.span_id and c.kind == CLIENT for c in chats)
    assert tool.parent_span_id == operation.span_id
    assert {s.trace_id for s in run_spans} == {workflow.trace_id}
    assert chats[0].end_time_unix_nano <= tool.start_time_unix_nano <= tool.end_time_unix_nano <= chats[1].start_time_unix_nano
    assert operation.start_time_unix_nano <= chats[0].start_time_unix_nano and chats[1].end_time_unix_nano <= operation.end_time_unix_nano

    w, o, t = attributes(workflow.attributes), attributes(operation.attributes), attributes(tool.attributes)
    assert w["flue.workflow.name"] == "ask" and w["flue.run_id"] == run_id and w["flue.workflow.duration_ms"] > 0
    assert o["flue.operation.kind"] == "prompt" and o["gen_ai.operation.name"] == "invoke_agent"
    assert o["flue.operation.id"].startswith("op_") and o["flue.run.id"] == run_id
    assert o["flue.session.name"] == o["flue.session"] == "default"
    assert o["gen_ai.usage.input_tokens"] == 270 and o["gen_ai.usage.output_tokens"] == 16
    first, second = attributes(chats[0].attributes), attributes(chats[1].attributes)
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.request.model"] == "chat-model"
    assert first["gen_ai.provider.name"] == "scripted" and first["flue.turn.provider_api"] == "openai-completions"
    assert first["gen_ai.usage.input_tokens"] == 120 and first["gen_ai.usage.output_tokens"] == 9
    assert first["flue.usage.cost_total"] == pytest.approx((120 * 3 + 9 * 15) / 1e6)
    assert first["gen_ai.response.finish_reasons"] == ["toolUse"] and second["gen_ai.response.finish_reasons"] == ["stop"]
    assert second["gen_ai.usage.input_tokens"] == 150 and second["gen_ai.usage.output_tokens"] == 7
    assert first["flue.turn.id"].startswith("turn_") and first["flue.operation.id"] == o["flue.operation.id"]
    assert t["gen_ai.operation.name"] == "execute_tool" and t["gen_ai.tool.name"] == "bash" == t["flue.tool.name"]
    assert t["gen_ai.tool.call.id"] == "call_ok" and tool.status.code != ERROR
    assert workflow.status.code != ERROR and operation.status.code != ERROR
    logged = [attributes(e.attributes) for e in workflow.events if e.name == "flue.log"]
    assert logged == [{"flue.log.level": "info", "flue.event.index": 1}]  # the message is content: left out

    # the failing tool call: ERROR with an exception event; its run and operation still succeed
    failed = [s for _, s in spans if s.name == "flue.tool bash" and attributes(s.attributes).get("flue.run.id") == failing_run]
    assert len(failed) == 1
    bad = failed[0]
    assert bad.status.code == ERROR and attributes(bad.attributes)["error.type"] == "tool_error"
    exception = [e for e in bad.events if e.name == "exception"]
    assert len(exception) == 1 and attributes(exception[0].attributes)["exception.type"] == "tool_error"
    assert by_id[bad.parent_span_id].name == "flue.operation prompt"

    # the HTTP prompt: submission -> operation -> chat, with the instance's ids
    submissions = {attributes(s.attributes)["flue.instance.id"]: s for _, s in spans if s.name == "flue.submission helper"}
    submission = submissions["u1"]
    sub = attributes(submission.attributes)
    assert sub["flue.instance_id"] == sub["flue.instance.id"] == "u1" and sub["flue.submission_id"].startswith("sub_")
    assert sub["gen_ai.agent.name"] == "helper" and sub["flue.submission.outcome"] == "completed"
    sub_op = one("flue.operation prompt", [s for _, s in spans if s.parent_span_id == submission.span_id])
    assert attributes(sub_op.attributes)["flue.submission.id"] == sub["flue.submission_id"]
    assert one("chat chat-model", [s for _, s in spans if s.parent_span_id == sub_op.span_id])

    # the failing model call: chat, its operation and its submission are errors, with Flue's words
    failed_sub = submissions["u2"]
    assert failed_sub.status.code == ERROR and attributes(failed_sub.attributes)["flue.submission.outcome"] == "failed"
    failed_op = one("flue.operation prompt", [s for _, s in spans if s.parent_span_id == failed_sub.span_id])
    failed_chat = one("chat chat-model", [s for _, s in spans if s.parent_span_id == failed_op.span_id])
    assert failed_op.status.code == ERROR and failed_chat.status.code == ERROR
    assert "HTTP 400 from provider 'scripted'" in failed_chat.status.message
    chat_error = attributes(failed_chat.attributes)["error.type"]
    assert chat_error != "error" and [e.name for e in failed_chat.events] == ["exception"]

    # nothing private in anything exported: not the key, not a prompt, an answer or a tool's output
    exported = b"".join(got.raw)
    for text in PRIVATE:
        assert text.encode() not in exported, f"{text[:12]}... was exported"

    # metrics: token counters, cost, turn / operation / tool durations
    points = got.metric_points()
    tokens = {(attributes(p.attributes)["gen_ai.token.type"]): p.as_int for p in points["flue.usage.tokens"]}
    assert tokens["input"] >= 270 and tokens["output"] >= 16
    assert sum(p.count for p in points["gen_ai.client.operation.duration"]) == 6  # six model calls
    assert sum(p.count for p in points["flue.operation.duration"]) == 4
    tool_errors = [p for p in points["flue.tool.duration"] if attributes(p.attributes).get("error.type")]
    assert sum(p.count for p in tool_errors) == 1
    assert {attributes(p.attributes)["flue.workflow.name"] for p in points["flue.workflow.duration"]} == {"ask", "leak"}
    assert "gen_ai.client.token.usage" in points
    assert sum(p.as_double for p in points["flue.usage.cost"]) >= (270 * 3 + 16 * 15) / 1e6


@pytest.fixture
def no_declared_secrets() -> Any:
    """This test declares a secret; it leaves none behind for the other tests of the process."""
    yield redaction
    redaction._declared_values.clear()
    redaction._declared_env.clear()
    redaction.use_project(None)


async def test_capture_content_puts_scrubbed_contents_on_spans(no_declared_secrets: Any) -> None:
    secret = "tok-capture-91e0c4d7b2"
    no_declared_secrets.declare(value=secret)
    projection, exporter = in_memory_projection(capture_content=True, max_content_length=100)
    model = ScriptedModel([calls(tool_call("bash", {"command": "echo captured-output"})),
                           reply(f"the token is {secret}; " + "x" * 200)])
    unsubscribe = flue.observe(lambda event, context: projection.handle(event))
    try:
        harness = await flue.init(flue.create_agent(name="capturer", model=model, tools=["bash"]))
        await (await harness.session()).prompt("PROMPT-capture: run it")
    finally:
        unsubscribe()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    chat = [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]
    assert len(chat) == 2 and "PROMPT-capture: run it" in chat[0].attributes["flue.turn.input"]
    output = chat[1].attributes["flue.turn.output"]
    assert "the token is [redacted]" in output and secret not in output and len(output) <= 101  # cut at 100
    tool = spans["flue.tool bash"]
    assert "echo captured-output" in tool.attributes["flue.tool.arguments"]
    assert "captured-output" in tool.attributes["flue.tool.result"]
    assert "flue.operation.result" in spans["flue.operation prompt"].attributes
    assert not projection.open  # every span was ended


def test_flue_info_lists_the_plugin_without_importing_opentelemetry(tmp_path: Path) -> None:
    root = project(tmp_path / "p", "http://127.0.0.1:9/v1", "http://127.0.0.1:9")
    code = (
        "import sys; from flue.cli import main\n"
        "try:\n    main(['info', '--json', '--root', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "print([m for m in sys.modules if m.startswith('opentelemetry')])"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert proc.returncode == 0, proc.stderr
    *info, modules = proc.stdout.strip().splitlines()
    assert modules == "[]", modules
    plugins = {p["name"]: p for p in json.loads("\n".join(info))["plugins"]}
    assert plugins["opentelemetry"]["hooks"] == ["flue_configure", "flue_observe"]
    assert plugins["opentelemetry"]["origin"].startswith("flue-opentelemetry ")


def test_the_plugin_declines_the_events_it_does_not_project() -> None:
    from flue_opentelemetry import plugin
    from flue_opentelemetry.projection import _HANDLERS

    assert plugin.HANDLED == set(_HANDLERS)


SKIPPING_OBSERVER = '''
from flue import hookimpl

SEEN = []


@hookimpl
def flue_observe(event):
    SEEN.append(event.type)


flue_observe.skip_types = {"text_delta", "turn_request", "message_start"}
'''


async def test_observers_that_skip_event_types_are_not_called_for_them(tmp_path: Path) -> None:
    from flue.harness.observers import observer_subscriber
    from flue.project import load_project

    root = tmp_path / "p"
    for rel, text in {"flue.yaml": "model: scripted/m\n", "plugins/spy.py": SKIPPING_OBSERVER,
                      "agents/assistant.md": "---\ndescription: a\ntools: []\n---\nBe brief.\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    project = load_project(root)
    # the installed opentelemetry plugin, unconfigured, skips everything; so turn_request is not built
    assert "turn_request" in observer_subscriber(project).skip_types
    assert "turn" not in observer_subscriber(project).skip_types
    harness = await flue.init("assistant", project=project, providers={"scripted": ScriptedModel([reply("a long answer")])})
    await (await harness.session()).prompt("hi")
    seen = project.pm.get_plugin("spy").SEEN
    assert "turn" in seen and "operation" in seen and "message_end" in seen
    assert not {"text_delta", "turn_request", "message_start"} & set(seen)


def in_memory_projection(**options: Any) -> tuple[Projection, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Projection(provider.get_tracer("test"), None, **options), exporter


async def test_a_task_nests_under_the_tool_call_that_started_it() -> None:
    projection, exporter = in_memory_projection()
    model = ScriptedModel([calls(tool_call("task", {"prompt": "sub job"})), reply("child done"), reply("parent done")])
    unsubscribe = flue.observe(lambda event, context: projection.handle(event))
    try:
        harness = await flue.init(flue.create_agent(name="boss", model=model, tools=["task"]))
        await (await harness.session()).prompt("go")
    finally:
        unsubscribe()
    spans = exporter.get_finished_spans()
    names = {s.context.span_id: s.name for s in spans}
    chain = sorted((s.name, names[s.parent.span_id] if s.parent else "") for s in spans if s.name != "chat model")
    assert chain == [
        ("flue.operation prompt", ""),  # the prompt (a root)
        ("flue.operation prompt", "flue.task"),  # the task's child session's prompt
        ("flue.operation task", "flue.tool task"),  # the task operation the model's tool call ran
        ("flue.task", "flue.operation task"),
        ("flue.tool task", "flue.operation prompt"),
    ]
    assert not projection.open


def test_the_plugin_is_on_only_when_an_endpoint_is_configured() -> None:
    from flue_opentelemetry.options import Options

    endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}
    assert not Options().active({})  # installed, not configured: nothing happens
    assert Options().active(endpoint) and Options().active({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c"})
    assert Options(endpoint="http://collector:4318").active({}) and Options(enabled=True).active({})
    assert not Options(enabled=False).active(endpoint)
    assert not Options().active({**endpoint, "OTEL_SDK_DISABLED": "true"})
    assert not Options().active({**endpoint, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"})
    assert Options(metrics=False).active(endpoint) and not Options(metrics=False, traces=False).active(endpoint)
    assert not Options().content({}) and Options().content({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
    assert not Options(capture_content=False).content({"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"})
