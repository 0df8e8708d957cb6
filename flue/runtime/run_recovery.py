"""Workflow runs whose process died: found by their lapsed lease, and ended as interrupted.

A run is owned by the process that admitted it (``Runtime.owner``), which
renews the run's lease while it executes (``coordinator.lease`` seconds,
renewed every third of that). A process that is SIGKILLed, or loses its
machine, stops renewing; once the lease has lapsed, a server's
:class:`RunRecovery` claims the run (``RunStore.claim_interrupted_run``:
atomic, so with several replicas exactly one takes each run) and ends it:

1. ``run_resume`` (``workflowName``, ``startedAt``): recovery is handling the run;
2. ``run_end`` with ``isError: true`` and ``error = {"name": "RunInterrupted",
   "type": "run_interrupted", "message": ...}``; the stream is closed and the
   run record says ``errored``.

Workflow code is **not** run again: a workflow may have called models, run
tools or reached other systems before the crash, and nothing records which
of its steps finished, so re-running it could repeat side effects. This is
what Flue does on Cloudflare (``run_resume`` then an errored ``run_end``;
its Node.js target leaves such runs active forever). Start a new run with the
same payload (``GET /runs/<runId>?meta`` has it) to retry.

Live readers of the run (long-poll, SSE, sockets, ``flue logs -f``) see the
two events and the end of the stream, so they stop waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from flue.events import RunEnd, RunResume
from flue.persistence.base import RunRecord, format_offset
from flue.persistence.kit import iso_to_ms, now_ms, utc_now_iso
from flue.runtime.stream_writer import StreamWriter
from flue.runtime.workflows import run_stream_path

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

log = logging.getLogger("flue.runtime")

INTERRUPTED = {
    "name": "RunInterrupted",
    "type": "run_interrupted",
    "message": "the process running this workflow stopped before the run finished (it was not run again)",
}


async def _last_event(runtime: Runtime, path: str, length: int) -> dict[str, Any] | None:
    if length == 0:
        return None
    last = await runtime.stores.streams.read_events(path, format_offset(length - 1), limit=1)
    return last.events[-1] if last.events else None


async def end_interrupted(runtime: Runtime, record: RunRecord) -> None:
    """``run_resume`` then an errored ``run_end`` on the run's stream (and to observers), close the
    stream, and end the record. Safe to repeat after a crash halfway: a stream that already ends
    with ``run_end`` (the run finished, only its record was not updated) is only recorded."""
    streams, path = runtime.stores.streams, run_stream_path(record.run_id)
    meta = await streams.create_stream(path)  # a crash may have come before the stream was made
    last = await _last_event(runtime, path, meta.length)
    if last is not None and last.get("type") == "run_end":
        if not meta.closed:
            await streams.close_stream(path)
        failed = bool(last.get("isError"))
        await runtime.stores.runs.end_run(
            record.run_id, status="errored" if failed else "completed", result=None if failed else last.get("result"),
            error=last.get("error") if failed else None, ended_at=utc_now_iso(),
            duration_ms=float(last.get("durationMs") or 0),
        )
        return
    duration_ms = float(max(0, now_ms() - iso_to_ms(record.started_at)))
    if not meta.closed:
        index = last.get("eventIndex") if last is not None else None
        first = index + 1 if isinstance(index, int) else meta.length
        sink = runtime.sink.child(context=True, first_index=first, run_id=record.run_id)
        writer = StreamWriter(streams, path)
        sink.subscribe(writer)
        await sink.emit(RunResume(workflow_name=record.workflow_name, started_at=record.started_at))
        await sink.emit(RunEnd(duration_ms=duration_ms, is_error=True, result=None, error=dict(INTERRUPTED)))
        await writer.drain()
        await streams.close_stream(path)
    await runtime.stores.runs.end_run(
        record.run_id, status="errored", error=dict(INTERRUPTED), ended_at=utc_now_iso(), duration_ms=duration_ms
    )


class RunRecovery:
    """A server's loop that ends runs whose owner died: at start, then every ``interval`` seconds."""

    def __init__(self, runtime: Runtime, *, lease_s: float, interval: float | None = None) -> None:
        self.runtime = runtime
        self.lease_s = lease_s
        self.interval = interval if interval is not None else min(15.0, max(0.2, lease_s / 2))
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="flue-run-recovery")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def recover_once(self) -> list[str]:
        """End every run whose lease has lapsed now; return their ids."""
        runs = getattr(self.runtime.stores, "runs", None)
        if runs is None:
            return []
        ended: list[str] = []
        while (record := await runs.claim_interrupted_run(self.runtime.owner, lease_s=self.lease_s)) is not None:
            log.warning("flue: run %s (%s) was interrupted by a crash; ending it", record.run_id, record.workflow_name)
            await end_interrupted(self.runtime, record)
            ended.append(record.run_id)
        return ended

    async def _loop(self) -> None:
        while True:
            try:
                await self.recover_once()
            except Exception as exc:  # a database hiccup: try again next time
                log.warning("flue: recovering interrupted runs failed: %r", exc)
            await asyncio.sleep(self.interval)

