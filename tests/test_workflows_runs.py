"""Workflow runs in-process (Runtime + start_run) and `flue run` under signals.

The model is flue.testing's ScriptedModel, registered by a project plugin
through the public flue_model_providers hook; persistence is the real
in-memory SQLite adapter; the run's events are read back from its stream.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flue.project import load_project
from flue.runtime.runtime import Runtime
from flue.runtime.workflows import InvalidPayload, WorkflowNotFound, start_run, validate_payload
from flue.testing import ScriptedModel, calls, reply, tool_call

ULID_RUN_ID = re.compile(r"^run_[0-9A-HJKMNP-TV-Z]{26}$")

MODEL_PLUGIN = '''
from flue import hookimpl
from flue.testing import ScriptedModel

MODEL = ScriptedModel()


@hookimpl
def flue_model_providers():
    return {"scripted": MODEL}
'''

HELLO = '''
"""Greet, log at every level, and use two harnesses."""
import asyncio


async def run(ctx):
    ctx.log.info("starting", name=ctx.payload["name"])
    harness = await ctx.init("assistant")
    try:
        await ctx.init("assistant")
    except Exception as exc:
        ctx.log.warn("second init refused", error=type(exc).__name__)
    other = await ctx.init("assistant", name="reviewer")
    greeting = await (await harness.session()).prompt(f"Greet {ctx.payload['name']}.")
    check = await (await other.session()).prompt("Is that polite?")
    ctx.log.error("not really an error", level="demo")
    return {"id": ctx.id, "greeting": greeting.text, "check": check.text, "harnesses": [harness.name, other.name],
            "has_env": "PATH" in ctx.env, "req": ctx.req}
'''

BOOM = "async def run(ctx):\n    ctx.log.info('about to fail')\n    raise LookupError('nothing to find')\n"

WAITING = '''
import asyncio
import os


async def run(ctx):
    for _ in range(1000):  # at most 10 s
        if os.path.exists(ctx.payload["gate"]):
            return "released"
        await asyncio.sleep(0.01)
    return "timed out"
'''

STEPS = """
agent: assistant
payload:
  type: object
  required: [topic]
  properties: {topic: {type: string}}
steps:
  - id: outline
    skill: outline
    args: {topic: "{{ payload.topic }}", points: 2}
    result:
      type: object
      required: [points]
      properties: {points: {type: array, items: {type: string}}}
  - id: research
    task: "Check this point: {{ steps.outline.data.points[0] }}"
    subagent: researcher
  - id: count
    shell: "printf '%s\\n' {% for p in steps.outline.data.points %}'{{ p }}' {% endfor %}| wc -l"
return:
  first: "{{ steps.outline.data.points[0] }}"
  checked: "{{ steps.research.text }}"
  lines: "{{ steps.count.stdout | trim | int }}"
"""


def write_project(root: Path, files: dict[str, str]) -> Path:
    base = {
        "flue.yaml": "model: scripted/chat\n",
        "plugins/model.py": MODEL_PLUGIN,
        "agents/assistant.md": (
            "---\ndescription: test assistant\ntools: []\nskills: [outline]\nsubagents: [researcher]\n---\nYou are terse.\n"
        ),
        "agents/researcher.md": "---\ndescription: checks facts\ntools: []\nmodel: scripted/research\n---\nYou check facts.\n",
        "skills/outline/SKILL.md": "---\nname: outline\ndescription: Outline a topic\n---\nOutline {{ topic }} in {{ points }} points.\n",
    }
    for rel, text in {**base, **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


async def open_runtime(root: Path) -> tuple[Runtime, ScriptedModel]:
    project = load_project(root)
    assert not project.errors, project.errors
    runtime = await Runtime.open(project)
    return runtime, project.pm.get_plugin("model").MODEL


async def stream_events(runtime: Runtime, run_id: str) -> list[dict]:
    read = await runtime.stores.streams.read_events(f"runs/{run_id}")
    assert read.closed, "the run's stream is closed after run_end"
    return read.events


async def test_a_python_run_has_a_record_and_ordered_events(tmp_path: Path) -> None:
    runtime, model = await open_runtime(write_project(tmp_path, {"workflows/hello.py": HELLO}))
    model.add(reply("Hello, Ada!"), reply("Yes."))
    try:
        handle = await start_run(runtime, "hello", {"name": "Ada"})
        record = await asyncio.wait_for(handle.wait(), 30)
        events = await stream_events(runtime, handle.run_id)
        stored = await runtime.stores.runs.get_run(handle.run_id)
    finally:
        await runtime.close()

    assert ULID_RUN_ID.match(handle.run_id)
    assert record.status == "completed" and stored.status == "completed"
    assert stored.payload == {"name": "Ada"}
    assert stored.result == {
        "id": handle.run_id, "greeting": "Hello, Ada!", "check": "Yes.", "harnesses": ["default", "reviewer"],
        "has_env": True, "req": None,
    }
    assert stored.error is None and stored.started_at <= stored.ended_at and stored.duration_ms > 0

    types = [e["type"] for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end"
    assert events[0]["workflowName"] == "hello" and events[0]["payload"] == {"name": "Ada"} == events[0]["input"]
    assert events[0]["startedAt"] == stored.started_at
    assert [e["eventIndex"] for e in events] == list(range(len(events)))
    assert all(e["runId"] == handle.run_id for e in events)
    logs = [(e["level"], e["message"], e["attributes"]) for e in events if e["type"] == "log"]
    assert logs == [
        ("info", "starting", {"name": "Ada"}),
        ("warn", "second init refused", {"error": "HarnessAlreadyInitialized"}),
        ("error", "not really an error", {"level": "demo"}),
    ]
    # Agent activity of the run is in the run's stream, between the logs, in order.
    assert types.index("log") < types.index("operation_start") < types.index("operation") < len(types) - 2
    assert "turn_request" not in types  # observers only, never on a stream
    assert {e["harness"] for e in events if e["type"] == "operation_start"} == {"default", "reviewer"}
    end = events[-1]
    assert end["isError"] is False and end["result"] == stored.result and "error" not in end
    assert end["durationMs"] == stored.duration_ms
    assert [t for t in events if t["type"] == "text_delta"]  # streamed deltas reach the run stream
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)


async def test_an_errored_run_records_the_error_and_ends_its_stream(tmp_path: Path) -> None:
    runtime, _ = await open_runtime(write_project(tmp_path, {"workflows/boom.py": BOOM}))
    try:
        handle = await start_run(runtime, "boom")
        record = await asyncio.wait_for(handle.wait(), 30)
        events = await stream_events(runtime, handle.run_id)
        stored = await runtime.stores.runs.get_run(handle.run_id)
    finally:
        await runtime.close()

    assert record.status == "errored" == stored.status
    assert stored.error == {"name": "LookupError", "message": "nothing to find"} and stored.result is None
    assert stored.payload == {}
    assert [e["type"] for e in events] == ["run_start", "log", "run_end"]
    end = events[-1]
    assert end["isError"] is True and end["error"] == stored.error and end["result"] is None
    assert end["durationMs"] >= 0


async def test_a_run_is_active_while_it_runs(tmp_path: Path) -> None:
    runtime, _ = await open_runtime(write_project(tmp_path, {"workflows/waiting.py": WAITING}))
    try:
        gate = tmp_path / "gate"
        handle = await start_run(runtime, "waiting", {"gate": str(gate)})
        await asyncio.sleep(0.05)
        active = await runtime.stores.runs.get_run(handle.run_id)
        assert active.status == "active" and active.ended_at is None and active.duration_ms is None
        read = await runtime.stores.streams.read_events(f"runs/{handle.run_id}")
        assert not read.closed
        gate.write_text("open")
        record = await asyncio.wait_for(handle.wait(), 10)
    finally:
        await runtime.close()
    assert record.status == "completed" and record.result == "released"


async def test_unknown_workflows_and_bad_payloads_are_refused_before_a_run_exists(tmp_path: Path) -> None:
    runtime, model = await open_runtime(write_project(tmp_path, {"workflows/steps.yaml": STEPS}))
    try:
        with pytest.raises(WorkflowNotFound, match=r"unknown workflow 'stpes' \(available: steps\)"):
            await start_run(runtime, "stpes")
        with pytest.raises(InvalidPayload, match="topic"):
            await start_run(runtime, "steps", {"topic": 3})
        runs, _cursor = await runtime.stores.runs.list_runs()
        assert runs == []
    finally:
        await runtime.close()
    assert model.requests == []
    validate_payload(runtime.project.workflows["steps"], {"topic": "tides"})


async def test_yaml_skill_task_and_shell_steps_template_on_earlier_results(tmp_path: Path) -> None:
    runtime, model = await open_runtime(write_project(tmp_path, {"workflows/steps.yaml": STEPS}))
    model.add(
        calls(tool_call("final_result", {"points": ["the moon pulls", "the earth turns"]})),
        reply("Correct: gravity."),
    )
    try:
        handle = await start_run(runtime, "steps", {"topic": "tides"})
        record = await asyncio.wait_for(handle.wait(), 30)
    finally:
        await runtime.close()

    assert record.status == "completed", record.error
    # The return keeps the type of a single expression (an int from the shell step's output).
    assert record.result == {"first": "the moon pulls", "checked": "Correct: gravity.", "lines": 2}
    skill_request, task_request = model.requests
    assert "Outline tides in 2 points." in skill_request.messages[-1]["content"]
    assert skill_request.model == "chat"
    # The task step ran the researcher profile with its own instructions and model.
    assert task_request.model == "research"
    assert task_request.messages[0]["content"].startswith("You check facts.")
    assert task_request.messages[-1] == {"role": "user", "content": "Check this point: the moon pulls"}


def test_yaml_steps_whose_agent_lacks_the_skill_or_subagent_are_diagnostics(tmp_path: Path) -> None:
    root = write_project(
        tmp_path,
        {
            "workflows/steps.yaml": STEPS,
            # A profile's lists are inherited unless the agent sets its own.
            "agents/base.md": "---\ndescription: base\nskills: [outline]\nsubagents: [researcher]\n---\nBase.\n",
            "agents/assistant.md": "---\ndescription: x\nprofile: base\nsubagents: []\n---\nYou are terse.\n",
        },
    )
    project = load_project(root)
    assert [(d.code, d.file) for d in project.errors] == [("workflow.subagent-not-listed", "workflows/steps.yaml")]
    (root / "agents/assistant.md").write_text("---\ndescription: x\nskills: []\n---\nYou are terse.\n")
    project = load_project(root)
    assert sorted(d.code for d in project.errors) == ["workflow.skill-not-listed", "workflow.subagent-not-listed"]
    assert "step 1 ('outline')" in next(d.message for d in project.errors if d.code == "workflow.skill-not-listed")


# -- flue run under SIGINT / SIGTERM ------------------------------------------------------

SLEEPY = '''
import asyncio


async def run(ctx):
    ctx.log.info("sleeping")
    await asyncio.sleep(60)
    return "woke up"
'''


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
async def test_flue_run_exits_130_on_sigint_and_143_on_sigterm(tmp_path: Path, signum: int, code: int) -> None:
    root = write_project(tmp_path, {"workflows/sleepy.py": SLEEPY})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flue", "run", "sleepy", cwd=root, env=dict(os.environ),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        seen = b""
        async with asyncio.timeout(30):
            while b"sleeping" not in seen:
                line = await proc.stderr.readline()
                assert line, f"flue run ended early: {seen.decode()}"
                seen += line
        proc.send_signal(signum)
        async with asyncio.timeout(15):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == code, (seen + err).decode()
    assert out == b""  # no result on stdout for an interrupted run
    text = (seen + err).decode()
    assert text.splitlines()[0].startswith("▶ run run_")
    assert "RunCancelled" in text  # run_end was still written: the run errored, it did not vanish


def test_flue_run_reports_bad_references_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "RAN"
    root = write_project(
        tmp_path,
        {
            "workflows/bad.yaml": (
                "agent: assistant\nsteps:\n  - id: one\n    prompt: \"{{ steps.two.text }}\"\n"
                "  - id: two\n    skill: nonexistent\n"
            ),
            "workflows/fine.py": f"async def run(ctx):\n    open({str(marker)!r}, 'w').write('x')\n    return 1\n",
        },
    )
    proc = subprocess.run([sys.executable, "-m", "flue", "run", "bad"], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "workflows/bad.yaml" in proc.stderr and "workflow.unknown-step" in proc.stderr
    assert "reference.missing-skill" in proc.stderr and "steps.two" in proc.stderr
    assert "run run_" not in proc.stderr
    # A project with errors runs nothing at all, not even its healthy workflows.
    proc = subprocess.run([sys.executable, "-m", "flue", "run", "fine"], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1 and not marker.exists()


SHOPPING = """\
agent: assistant
steps:
  - id: shopping
    prompt: "What do we need?"
    result: {type: object, properties: {items: {type: array, items: {type: string}}}, required: [items]}
  - id: list
    shell: "echo {{ steps.shopping.data.items | join(',') }}"
return:
  items: "{{ steps.shopping.data.items }}"
  count: "{{ steps.shopping.data.items | length }}"
  first: "{{ steps.list.stdout | trim }}"
"""

BROKEN_TEMPLATE = """\
agent: assistant
steps:
  - id: shopping
    prompt: "What do we need?"
  - id: report
    prompt: "We need {{ steps.shopping.items }}"
"""


async def test_templates_read_keys_before_attributes_and_a_template_error_fails_the_run(tmp_path: Path) -> None:
    """``data.items`` is the data's ``items``, not the dict method; a template that reaches a
    method anyway fails the run with a message naming the file, the step and the expression,
    and the run ends errored (never left active, never a traceback in events)."""
    root = write_project(tmp_path, {"workflows/shopping.yaml": SHOPPING, "workflows/broken.yaml": BROKEN_TEMPLATE})
    runtime, model = await open_runtime(root)
    model.add(calls(tool_call("final_result", {"items": ["eggs", "milk"]})), reply("unused"), reply("anything"))
    try:
        handle = await start_run(runtime, "shopping")
        record = await asyncio.wait_for(handle.wait(), 30)
        assert record.status == "completed", record.error
        assert record.result == {"items": ["eggs", "milk"], "count": 2, "first": "eggs,milk"}

        handle = await start_run(runtime, "broken")
        record = await asyncio.wait_for(handle.wait(), 30)
        stored = await runtime.stores.runs.get_run(handle.run_id)
        events = await stream_events(runtime, handle.run_id)
    finally:
        await runtime.close()
    assert record.status == "errored" == stored.status
    message = stored.error["message"]
    assert "workflows/broken.yaml" in message and "step 'report'" in message
    assert "{{ steps.shopping.items }}" in message and "data['items']" in message
    assert stored.error["type"] == "workflow_template_error" and stored.error["name"] == "TemplateStepError"
    assert events[-1]["type"] == "run_end" and events[-1]["error"] == stored.error


async def test_yaml_steps_take_a_role_and_an_undeclared_one_is_a_diagnostic(tmp_path: Path) -> None:
    files = {
        "agents/assistant.md": "---\ndescription: x\ntools: []\nroles:\n  pirate: Talk like a pirate.\n---\nYou are terse.\n",
        "workflows/ahoy.yaml": "agent: assistant\nsteps:\n  - id: hi\n    prompt: Say hello\n    role: pirate\nreturn: \"{{ steps.hi.text }}\"\n",
    }
    runtime, model = await open_runtime(write_project(tmp_path, files))
    model.add(reply("Ahoy!"))
    try:
        record = await asyncio.wait_for((await start_run(runtime, "ahoy")).wait(), 30)
    finally:
        await runtime.close()
    assert record.status == "completed" and record.result == "Ahoy!"
    assert model.requests[0].messages[0]["content"].startswith("Talk like a pirate.\n\nYou are terse.")

    (tmp_path / "workflows/ahoy.yaml").write_text(files["workflows/ahoy.yaml"].replace("pirate", "poet"))
    assert [d.code for d in load_project(tmp_path).errors] == ["workflow.unknown-role"]
