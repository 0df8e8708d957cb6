"""Issue 7: two `flue start` replicas share one PostgreSQL database.

2,000 dispatches over 100 agent instances are admitted (through the public
``flue.dispatch`` from this process) while two real server processes work
them off; one server is SIGKILLed midway. Every dispatch settles exactly once,
in per-instance admission order, and the survivor takes over the dead one's
leased work. The model is a project plugin registered through the public
``flue_model_providers`` hook (2,000 litellm round trips would measure litellm,
not persistence); it logs every call per process, so double processing shows.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path

import pytest
from fixtures.durability import write_files

import flue
from flue.project import load_project
from flue.runtime.runtime import Runtime
from flue.testing.server_process import FlueServerProcess

psycopg = pytest.importorskip("psycopg")
pytest.importorskip("flue_postgres", reason="flue-postgres is not installed (pip install -e plugins/flue-postgres)")
from test_persistence_postgres import schema  # noqa: E402,F401  (the per-test schema fixture)

pytestmark = pytest.mark.postgres

INSTANCES = 100
PER_INSTANCE = 20

MODEL_PLUGIN = '''
"""A quick echo model that logs each call (pid and prompt) to $FLUE_TEST_DIR."""

import asyncio
import os
from pathlib import Path

from flue import hookimpl
from flue.events import Usage
from flue.models.base import ModelChunk


class Echo:
    async def stream(self, request):
        text = next(m["content"] for m in reversed(request.messages) if m["role"] == "user")
        with (Path(os.environ["FLUE_TEST_DIR"]) / f"calls-{os.getpid()}.log").open("a") as log:
            log.write(text + "\\n")
        await asyncio.sleep(0.005)
        yield ModelChunk(text=f"echo: {text}")
        yield ModelChunk(finish_reason="stop", usage=Usage.of(input=1, output=1))


@hookimpl
def flue_model_providers():
    return {"echo": Echo()}
'''


def make_project(root: Path, url: str, schema_name: str) -> Path:
    return write_files(root, {
        "flue.yaml": (
            "model: echo/fast\n"
            f'persistence: {{kind: postgres, url: "{url}", schema: {schema_name}, pool_size: 8}}\n'
            "coordinator: {lease: 2, poll: 0.2, concurrency: 32}\n"
        ),
        "agents/echo.md": "---\ndescription: echoes\ntools: []\n---\nEcho.\n",
        "plugins/echo_model.py": MODEL_PLUGIN,
    })


@pytest.mark.slow
async def test_two_replicas_share_the_work_and_survive_a_kill(tmp_path: Path, schema) -> None:  # noqa: F811
    url, name = schema
    work = tmp_path / "work"
    work.mkdir()
    project = make_project(tmp_path / "proj", url, name)
    env = {"FLUE_TEST_DIR": str(work)}
    a, b = FlueServerProcess(project, env=env), FlueServerProcess(project, env=env)
    admitted: dict[str, list[str]] = {f"i{i}": [] for i in range(INSTANCES)}
    runtime = None
    try:
        await a.start()
        await b.start()
        runtime = await Runtime.open(load_project(project))  # admits only: no coordinator here

        async def admit_instance(i: int) -> None:
            for n in range(PER_INSTANCE):
                receipt = await flue.dispatch(
                    "echo", id=f"i{i}", input={"message": f"i{i} #{n}"}, dispatch_id=f"d-{i}-{n}", runtime=runtime
                )
                admitted[f"i{i}"].append(receipt.dispatch_id)

        admission = asyncio.gather(*(admit_instance(i) for i in range(INSTANCES)))
        subs = runtime.stores.submissions

        async def settled(at_least: int, timeout: float) -> None:
            """Poll the shared database (read-only) until ``at_least`` submissions are settled."""
            sql = f'SELECT count(*) FROM "{name}".flue_submissions WHERE status IN (\'completed\', \'failed\')'
            async with asyncio.timeout(timeout), await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                while (await (await conn.execute(sql)).fetchone())[0] < at_least:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)

        # kill replica A once a good part of the work is done (both replicas must have had some)
        await settled((INSTANCES * PER_INSTANCE) // 3, timeout=120)
        a.kill()
        assert await a.wait() == -signal.SIGKILL
        await admission
        await settled(INSTANCES * PER_INSTANCE, timeout=240)
        assert await b.stop() == 0

        calls = {p.name: p.read_text().splitlines() for p in work.glob("calls-*.log")}
        assert set(calls) == {f"calls-{a.pid}.log", f"calls-{b.pid}.log"}, "both replicas must have worked"
        for instance, ids in admitted.items():
            rows = await subs.list_for_instance(f"agents/echo/{instance}")
            # none lost, each settled once and completed, in admission order
            assert [r.dispatch_id for r in rows] == ids
            assert all(r.status == "completed" for r in rows), [r.error for r in rows if r.status != "completed"]
            assert [r.result["text"] for r in rows] == [f"echo: {instance} #{n}" for n in range(PER_INSTANCE)]
            events = (await runtime.stores.streams.read_events(f"agents/echo/{instance}")).events
            settled_ids = [e["dispatchId"] for e in events if e["type"] == "submission_settled"]
            assert settled_ids == ids
            assert [e["dispatchId"] for e in events if e["type"] == "submission_admitted"] == ids
            history = await runtime.stores.sessions.load(f"agents/echo/{instance}/default/default")
            users = [m["content"] for m in history.messages if m["role"] == "user"]
            assert users == [f"{instance} #{n}" for n in range(PER_INSTANCE)]  # processed once each, in order
        # A's leased work was taken over (claimed again after its lease expired) and finished
        taken_over = [r for i in admitted for r in await subs.list_for_instance(f"agents/echo/{i}") if r.attempts > 1]
        assert taken_over
        # a model call can only repeat for work in flight at the kill (at most A's concurrency)
        counts = Counter(line for lines in calls.values() for line in lines)
        assert set(counts) == {f"i{i} #{n}" for i in range(INSTANCES) for n in range(PER_INSTANCE)}
        repeated = [t for t, c in counts.items() if c > 1]
        assert len(repeated) <= 32 and all(counts[t] == 2 for t in repeated)
    except BaseException:
        print("--- replica A ---\n" + a.output()[-4000:] + "\n--- replica B ---\n" + b.output()[-4000:])
        raise
    finally:
        if runtime is not None:
            await runtime.close()
        await a.stop()
        await b.stop()


async def test_replaying_a_dispatch_returns_its_receipt_and_other_input_conflicts(tmp_path: Path, schema) -> None:  # noqa: F811
    url, name = schema
    project = make_project(tmp_path / "proj", url, name)
    runtime = await Runtime.open(load_project(project))
    try:
        first = await flue.dispatch("echo", id="u1", input={"message": "hello"}, dispatch_id="dsp-42", runtime=runtime)
        again = await flue.dispatch("echo", id="u1", input={"message": "hello"}, dispatch_id="dsp-42", runtime=runtime)
        assert again == first and again.accepted_at == first.accepted_at
        with pytest.raises(flue.DispatchConflictError, match="dsp-42"):
            await flue.dispatch("echo", id="u1", input={"message": "something else"}, dispatch_id="dsp-42",
                                runtime=runtime)
        events = (await runtime.stores.streams.read_events("agents/echo/u1")).events
        assert [(e["type"], e["dispatchId"]) for e in events] == [("submission_admitted", "dsp-42")]
        assert events[0]["input"] == {"message": "hello"}
    finally:
        await runtime.close()
