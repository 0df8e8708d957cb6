"""Workflow runs: admission, execution, run records and the run's event stream.

A run is admitted by :func:`start_run` (run record + stream created, then the
workflow executes in the background) and observed through ``runs/<runId>``:
``run_start``, the workflow's own events, then ``run_end`` with ``durationMs``,
``isError`` and ``result`` or ``error``; the stream is closed after ``run_end``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flue import strict_json
from flue.authoring.workflows import WorkflowDefinition
from flue.clock import utc_now_iso
from flue.errors import FlueError
from flue.errors import serialize_error as error_info
from flue.events import RunEnd, RunStart
from flue.ids import run_id as new_run_id
from flue.persistence.base import RunRecord
from flue.redaction import scrub
from flue.runtime.context import FlueContext
from flue.runtime.stream_writer import OPERATION_END, StreamWriter
from flue.stream_paths import run_stream_path

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

log = logging.getLogger("flue.runtime")


class WorkflowNotFound(FlueError, KeyError):
    error_type = "workflow_not_found"
    http_status = 404


class InvalidPayload(FlueError, ValueError):
    """The payload does not match the workflow's schema."""

    error_type = "invalid_request"
    http_status = 400


class WorkflowResultError(TypeError):
    pass


@dataclass
class RunHandle:
    run_id: str
    record: RunRecord
    task: asyncio.Task[RunRecord]

    async def wait(self) -> RunRecord:
        return await asyncio.shield(self.task)


def validate_payload(wf: WorkflowDefinition, payload: Any) -> None:
    """Check a payload against the workflow's declared JSON Schema (YAML ``payload:``)."""
    if wf.payload is None:
        return
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(wf.payload).iter_errors(payload), key=lambda e: list(e.path))
    if errors:
        lines = "; ".join(f"{'/'.join(map(str, e.path)) or 'payload'}: {e.message}" for e in errors)
        raise InvalidPayload(f"payload does not match workflow '{wf.name}': {lines}")


async def start_run(runtime: Runtime, name: str, payload: Any = None, *, req: Any = None) -> RunHandle:
    """Admit a run: persist its record and stream, then execute it in the background."""
    wf = runtime.project.workflows.get(name)
    if wf is None:
        raise WorkflowNotFound(
            f"unknown workflow '{name}' (available: {', '.join(sorted(runtime.project.workflows)) or 'none'})"
        )
    payload = {} if payload is None else payload
    try:  # the boundary rules, whoever starts the run (HTTP, a socket, code, the CLI)
        strict_json.check(payload, what="the payload")
    except strict_json.JsonRuleError as exc:
        raise InvalidPayload(str(exc)) from None
    validate_payload(wf, payload)
    run_id = new_run_id()
    record = RunRecord(run_id=run_id, workflow_name=name, payload=payload, started_at=utc_now_iso())
    lease_s, owner = runtime.project.config.coordinator.lease, runtime.owner
    # owned by this process: if it dies, the lapsed lease lets a server end the run (flue.runtime.run_recovery)
    stored = record.model_copy(update={"payload": scrub(payload)})  # ctx.payload keeps the caller's values
    runs = runtime.stores.runs
    if hasattr(runs, "open_run"):  # one transaction (optional in the RunStore contract)
        await runs.open_run(stored, run_stream_path(run_id), owner=owner, lease_s=lease_s)
    else:
        await runs.create_run(stored, owner=owner, lease_s=lease_s)
        await runtime.stores.streams.create_stream(run_stream_path(run_id))
    task = asyncio.get_running_loop().create_task(_execute(runtime, wf, record, req), name=f"flue-run-{run_id}")
    runtime.run_leases.hold(run_id, owner, task)
    return RunHandle(run_id=run_id, record=record, task=task)


class RunLeases:
    """The leases of the runs this process executes, renewed by one task every ``heartbeat_s``
    (``coordinator.heartbeat``) for all of them; a run another process took over (it judged
    this one dead and ended the run as interrupted) is stopped here. A run is renewed once
    it is a heartbeat old (its lease is fresh before), until it begins to end (``release``)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._runs: dict[str, tuple[str, asyncio.Task[Any], float]] = {}
        self._task: asyncio.Task[None] | None = None

    def hold(self, run_id: str, owner: str, task: asyncio.Task[Any]) -> None:
        loop = asyncio.get_running_loop()
        self._runs[run_id] = (owner, task, loop.time())
        task.add_done_callback(lambda _t: self.release(run_id))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._task = loop.create_task(self._renew(), name="flue-run-leases")

    def release(self, run_id: str) -> None:
        """The run is ending: its end writes the record, nothing renews it any more."""
        self._runs.pop(run_id, None)

    async def _renew(self) -> None:
        cfg = self._runtime.project.config.coordinator
        loop = asyncio.get_running_loop()
        while self._runs:
            await asyncio.sleep(cfg.heartbeat_s)
            due = loop.time() - cfg.heartbeat_s
            for run_id, (owner, task, since) in list(self._runs.items()):
                if task.get_loop() is not loop:  # left by an event loop that ended without it
                    if task.get_loop().is_closed():
                        self.release(run_id)
                    continue
                if since > due or task.done():
                    continue
                try:
                    held = await self._runtime.stores.runs.renew_run(run_id, owner, lease_s=cfg.lease)
                except Exception as exc:  # a database hiccup: the lease is long enough to try again
                    log.warning("flue: renewing the lease of run %s failed: %r", run_id, exc)
                    continue
                if not held and run_id in self._runs and not task.done():
                    log.warning("flue: run %s was taken over by another process; stopping it here", run_id)
                    task.cancel()


async def _execute(runtime: Runtime, wf: WorkflowDefinition, record: RunRecord, req: Any) -> RunRecord:
    path = run_stream_path(record.run_id)
    sink = runtime.sink.child(context=True, run_id=record.run_id)
    writer = StreamWriter(runtime.stores.streams, path, linger_after=OPERATION_END)  # the run's end takes the last
    sink.subscribe(writer)
    started = time.monotonic()
    await sink.emit(RunStart(workflow_name=wf.name, started_at=record.started_at, payload=record.payload,
                             input=record.payload))
    result: Any = None
    error: dict[str, Any] | None = None
    cancelled: BaseException | None = None
    ctx = FlueContext(id=record.run_id, payload=record.payload, runtime=runtime, sink=sink, req=req)
    try:
        if wf.kind == "python":
            result = await _run_python(runtime, wf, ctx)
        else:
            from flue.runtime.yaml_workflow import run_yaml_workflow

            result = await run_yaml_workflow(wf, ctx)
        result = _json_result(result)
    except asyncio.CancelledError as exc:
        cancelled = exc
        error = {"name": "RunCancelled", "message": "the run was cancelled"}
    except Exception as exc:
        error = error_info(exc)
    result, error = scrub(result), scrub(error)  # its stream, record and callers never see a known secret
    duration_ms = round((time.monotonic() - started) * 1000, 3)
    status = "errored" if error else "completed"
    runtime.run_leases.release(record.run_id)  # from here on its end writes the record
    runs = runtime.stores.runs
    ending = hasattr(runs, "close_run")  # run_end, the stream's close and the record in one transaction
    if ending:
        writer.hold()
    await sink.emit(RunEnd(duration_ms=duration_ms, is_error=error is not None, result=result, error=error))
    ended = utc_now_iso()
    if ending:
        await runs.close_run(record.run_id, path, await writer.take(), status=status, result=result, error=error,
                             ended_at=ended, duration_ms=duration_ms)
    else:
        await writer.drain()
        await runtime.stores.streams.close_stream(path)
        await runs.end_run(
            record.run_id, status=status, result=result, error=error, ended_at=ended, duration_ms=duration_ms
        )
    final = record.model_copy(
        update={"status": status, "result": result, "error": error, "ended_at": ended, "duration_ms": duration_ms,
                "payload": scrub(record.payload)}
    )
    if cancelled is not None:
        raise cancelled
    return final


def _json_result(value: Any) -> Any:
    """The result as plain JSON, within the depth every stream and record can hold."""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    try:
        strict_json.check(value, max_depth=strict_json.MAX_STORED_DEPTH, what="the result")
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise WorkflowResultError(f"the workflow returned a value that is not JSON-serializable: {exc}") from None


async def _run_python(runtime: Runtime, wf: WorkflowDefinition, ctx: FlueContext) -> Any:
    module = load_workflow_module(runtime, wf)
    run = getattr(module, "run", None)
    if run is None or not asyncio.iscoroutinefunction(run):
        raise TypeError(f"workflow '{wf.name}' must define 'async def run(ctx)'")
    return await run(ctx)


def load_workflow_module(runtime: Runtime, wf: WorkflowDefinition) -> Any:
    """Import ``workflows/<name>.py`` (cached; under ``flue dev`` until the file changes)."""
    assert wf.path is not None
    cached = runtime._workflow_modules.get(wf.name)
    if cached is not None and not runtime.dev:
        return cached[1]
    path = Path(wf.path)
    mtime = path.stat().st_mtime
    if cached is not None and cached[0] == mtime:
        return cached[1]
    module_name = f"flue_workflows.{wf.name.replace(':', '_').replace('-', '_')}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    runtime._workflow_modules[wf.name] = (mtime, module)
    return module
