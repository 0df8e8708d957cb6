"""The persistence contract test suite: run it against your adapter.

Subclass :class:`PersistenceContract` in a test module and provide two things:
an ``adapter`` fixture yielding a fresh adapter over *empty* storage (not yet
migrated; close it in teardown), and ``stamp_schema_version`` writing a raw
version stamp the way your backend stores it::

    import pytest
    from flue.testing.persistence_contract import PersistenceContract

    class TestMyBackend(PersistenceContract):
        @pytest.fixture
        async def adapter(self, tmp_path):
            adapter = MyAdapter(tmp_path / "db")
            yield adapter
            await adapter.close()

        async def stamp_schema_version(self, adapter, value: str) -> None:
            await adapter.raw_execute("UPDATE flue_meta SET value = ? WHERE key = 'schema_version'", (value,))

pytest collects every ``test_*`` method for your class. The suite needs
``pytest-asyncio``; it marks its tests itself, so strict mode works too. It
checks observable behaviour only (atomicity, ordering, idempotency, fencing),
never table layouts, so non-SQL backends can pass it. Clock-dependent
submission behaviour is driven through the ``now`` parameters; nothing sleeps.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from flue.persistence.base import (
    OFFSET_BEFORE_START,
    EventStreamStore,
    PersistenceAdapter,
    RunRecord,
    RunStore,
    SchemaVersionError,
    SessionData,
    SessionStore,
    SnapshotStore,
    StreamClosed,
    StreamNotFound,
    format_offset,
)
from flue.persistence.submissions import (
    ERROR_ATTEMPTS_EXHAUSTED,
    ERROR_DEADLINE_EXCEEDED,
    DispatchConflictError,
    DispatchReceipt,
    QueueFull,
    SubmissionStore,
)

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _run(run_id: str, workflow: str, started_s: float, **kw: Any) -> RunRecord:
    started = at(started_s).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return RunRecord(run_id=run_id, workflow_name=workflow, started_at=started, **kw)


@pytest.mark.asyncio
class PersistenceContract:
    """Behavioural contract for a persistence adapter. Subclass it (see the module docstring)."""

    # -- what the subclass provides ------------------------------------------------

    @pytest.fixture
    def adapter(self) -> Any:
        raise NotImplementedError("provide an `adapter` fixture yielding a fresh, un-migrated adapter")

    async def stamp_schema_version(self, adapter: Any, value: str) -> None:
        """Overwrite the stored schema-version stamp with ``value`` (raw, bypassing checks)."""
        raise NotImplementedError("implement stamp_schema_version for your backend")

    # -- shared fixtures ---------------------------------------------------------------

    @pytest_asyncio.fixture
    async def stores(self, adapter: Any) -> Any:
        await adapter.migrate()
        return await adapter.connect()

    # -- schema ---------------------------------------------------------------------------

    async def test_stores_satisfy_the_protocols(self, adapter: Any, stores: Any) -> None:
        assert isinstance(adapter, PersistenceAdapter)
        assert isinstance(stores.sessions, SessionStore) and isinstance(stores.runs, RunStore)
        assert isinstance(stores.streams, EventStreamStore) and isinstance(stores.snapshots, SnapshotStore)
        assert isinstance(stores.submissions, SubmissionStore)
        assert await adapter.connect() is not None  # connect() may be called again

    async def test_migrate_is_idempotent_and_keeps_data(self, adapter: Any) -> None:
        await adapter.migrate()
        stores = await adapter.connect()
        await stores.sessions.save("agents/a/1/default/default", SessionData(messages=[{"role": "user", "content": "x"}]))
        await adapter.migrate()
        stores = await adapter.connect()
        loaded = await stores.sessions.load("agents/a/1/default/default")
        assert loaded is not None and loaded.messages == [{"role": "user", "content": "x"}]

    async def test_newer_schema_version_refuses_to_start(self, adapter: Any) -> None:
        await adapter.migrate()
        await adapter.connect()
        await self.stamp_schema_version(adapter, "999")
        with pytest.raises(SchemaVersionError, match=r"newer Flue \(schema 999, this Flue knows 1\)"):
            await adapter.connect()
        with pytest.raises(SchemaVersionError, match="newer Flue"):
            await adapter.migrate()

    async def test_unknown_schema_version_refuses_to_start(self, adapter: Any) -> None:
        await adapter.migrate()
        await self.stamp_schema_version(adapter, "banana")
        with pytest.raises(SchemaVersionError, match="unknown Flue schema version 'banana'"):
            await adapter.connect()

    # -- sessions ---------------------------------------------------------------------------

    async def test_sessions_save_load_overwrite_delete(self, stores: Any) -> None:
        key = "agents/helper/abc/default/default"
        assert await stores.sessions.load(key) is None
        first = SessionData(
            messages=[{"role": "user", "content": "héllo \u0000 ✓"}, {"role": "assistant", "content": None,
                                                                        "tool_calls": [{"id": "t1"}]}],
            metadata={"usage": {"input": 3}, "compaction": None},
        )
        await stores.sessions.save(key, first)
        assert await stores.sessions.load(key) == first
        second = SessionData(messages=[{"role": "user", "content": "again"}])
        await stores.sessions.save(key, second)
        assert await stores.sessions.load(key) == second
        assert await stores.sessions.load(key + "-other") is None
        await stores.sessions.delete(key)
        assert await stores.sessions.load(key) is None
        await stores.sessions.delete(key)  # deleting nothing is fine

    # -- runs ----------------------------------------------------------------------------------

    async def test_create_run_first_writer_wins(self, stores: Any) -> None:
        rec = _run("run_1", "hello", 0, payload={"name": "a"})
        assert await stores.runs.create_run(rec) == rec
        dup = _run("run_1", "other", 5, payload={"name": "b"})
        assert await stores.runs.create_run(dup) == rec
        assert await stores.runs.get_run("run_1") == rec
        assert await stores.runs.get_run("run_missing") is None

    async def test_end_run_finalizes_once_and_ignores_unknown(self, stores: Any) -> None:
        await stores.runs.create_run(_run("run_1", "hello", 0, payload=None))
        await stores.runs.end_run("run_1", status="completed", result={"ok": [1, 2]}, ended_at="2030-01-01T12:00:02.000Z",
                                  duration_ms=2000.0)
        got = await stores.runs.get_run("run_1")
        assert got.status == "completed" and got.result == {"ok": [1, 2]} and got.error is None
        assert got.ended_at == "2030-01-01T12:00:02.000Z" and got.duration_ms == 2000.0
        await stores.runs.end_run("run_1", status="errored", error={"type": "x", "message": "late"},
                                  ended_at="2030-01-01T12:00:09.000Z", duration_ms=9000.0)
        assert (await stores.runs.get_run("run_1")).status == "completed"
        await stores.runs.end_run("run_nope", status="errored", error={"message": "x"}, ended_at="x", duration_ms=1)
        assert await stores.runs.get_run("run_nope") is None

    async def test_run_leases_hand_an_interrupted_run_to_one_new_owner(self, stores: Any) -> None:
        runs = stores.runs
        await runs.create_run(_run("run_1", "hello", 0), owner="p1", lease_s=30, now=at(0))
        await runs.create_run(_run("run_free", "hello", 0))  # no owner: no lease, never claimed
        assert await runs.claim_interrupted_run("p2", now=at(29)) is None  # the lease is live
        assert await runs.renew_run("run_1", "p1", lease_s=30, now=at(20))  # now until 50
        assert not await runs.renew_run("run_1", "p2", now=at(20))  # only its owner renews it
        assert await runs.claim_interrupted_run("p2", now=at(45)) is None
        taken = await runs.claim_interrupted_run("p2", lease_s=30, now=at(51))
        assert taken is not None and taken.run_id == "run_1" and taken.status == "active"
        assert taken.workflow_name == "hello"
        assert await runs.claim_interrupted_run("p3", now=at(52)) is None  # p2 holds it now
        assert not await runs.renew_run("run_1", "p1", now=at(52))  # the old owner lost it
        assert await runs.renew_run("run_1", "p2", now=at(52))
        await runs.end_run("run_1", status="errored", error={"name": "RunInterrupted", "message": "m"},
                           ended_at="2030-01-01T12:01:00.000Z", duration_ms=60000.0)
        assert not await runs.renew_run("run_1", "p2", now=at(53))  # ending a run ends its lease
        assert await runs.claim_interrupted_run("p3", now=at(500)) is None
        assert (await runs.get_run("run_1")).status == "errored"

    async def test_concurrent_run_claims_never_share_a_run(self, stores: Any) -> None:
        runs = stores.runs
        for i in range(3):
            await runs.create_run(_run(f"run_{i}", "hello", i), owner="dead", lease_s=1, now=at(0))
        claims = await asyncio.gather(*(runs.claim_interrupted_run(f"p{k}", now=at(10)) for k in range(12)))
        won = [c.run_id for c in claims if c is not None]
        assert sorted(won) == ["run_0", "run_1", "run_2"]

    async def test_list_runs_newest_first_with_cursor_and_filters(self, stores: Any) -> None:
        for i in range(7):
            await stores.runs.create_run(_run(f"run_{i:02d}", "even" if i % 2 == 0 else "odd", i))
        await stores.runs.end_run("run_04", status="errored", error={"message": "boom"}, ended_at="x", duration_ms=1)
        seen: list[str] = []
        cursor = None
        pages = 0
        while True:
            page, cursor = await stores.runs.list_runs(limit=3, cursor=cursor)
            seen += [r.run_id for r in page]
            pages += 1
            if cursor is None:
                break
        assert seen == [f"run_{i:02d}" for i in reversed(range(7))]
        assert pages == 3
        evens, nxt = await stores.runs.list_runs(workflow_name="even")
        assert [r.run_id for r in evens] == ["run_06", "run_04", "run_02", "run_00"] and nxt is None
        errored, _ = await stores.runs.list_runs(status="errored")
        assert [r.run_id for r in errored] == ["run_04"]
        active_even, _ = await stores.runs.list_runs(workflow_name="even", status="active", limit=2)
        assert [r.run_id for r in active_even] == ["run_06", "run_02"]
        with pytest.raises(ValueError):
            await stores.runs.list_runs(cursor="not a cursor")

    async def test_list_runs_same_start_time_pages_without_gaps(self, stores: Any) -> None:
        for i in range(5):
            await stores.runs.create_run(_run(f"run_{i}", "w", 0))
        first, cursor = await stores.runs.list_runs(limit=2)
        rest, end = await stores.runs.list_runs(limit=10, cursor=cursor)
        ids = [r.run_id for r in first + rest]
        assert sorted(ids, reverse=True) == ids and len(set(ids)) == 5 and end is None

    # -- event streams -------------------------------------------------------------------------

    async def test_create_stream_is_idempotent(self, stores: Any) -> None:
        meta = await stores.streams.create_stream("runs/run_1")
        assert meta.path == "runs/run_1" and meta.length == 0 and not meta.closed
        assert meta.next_offset == format_offset(0)
        await stores.streams.append_events("runs/run_1", [{"type": "run_start"}])
        again = await stores.streams.create_stream("runs/run_1")
        assert again.created_at == meta.created_at and again.length == 1
        assert await stores.streams.get_stream_meta("runs/run_1") == again
        assert await stores.streams.get_stream_meta("runs/none") is None

    async def test_append_and_read_offsets(self, stores: Any) -> None:
        s = stores.streams
        path = "agents/helper/abc"
        await s.create_stream(path)
        off2 = await s.append_events(path, [{"n": 1}, {"n": 2}])
        assert off2 == format_offset(2)
        assert await s.append_events(path, []) == off2
        off5 = await s.append_events(path, [{"n": 3}, {"n": 4, "nested": {"x": [1, "two", None]}}, {"n": 5}])
        assert off5 == format_offset(5)

        everything = await s.read_events(path)
        assert [e["n"] for e in everything.events] == [1, 2, 3, 4, 5]
        assert everything.events[3]["nested"] == {"x": [1, "two", None]}
        assert everything.next_offset == off5 and everything.up_to_date and not everything.closed

        after2 = await s.read_events(path, off2)
        assert [e["n"] for e in after2.events] == [3, 4, 5] and after2.next_offset == off5

        page = await s.read_events(path, OFFSET_BEFORE_START, limit=2)
        assert [e["n"] for e in page.events] == [1, 2] and not page.up_to_date and page.next_offset == off2
        page = await s.read_events(path, page.next_offset, limit=2)
        assert [e["n"] for e in page.events] == [3, 4] and not page.up_to_date
        page = await s.read_events(path, page.next_offset, limit=2)
        assert [e["n"] for e in page.events] == [5] and page.up_to_date and page.next_offset == off5

        tail = await s.read_events(path, off5)
        assert tail.events == [] and tail.up_to_date and tail.next_offset == off5
        with pytest.raises(ValueError):
            await s.read_events(path, "garbage")

    async def test_missing_stream_reads_empty_and_rejects_writes(self, stores: Any) -> None:
        s = stores.streams
        res = await s.read_events("runs/nowhere")
        assert res.events == [] and res.up_to_date and not res.closed
        with pytest.raises(StreamNotFound):
            await s.append_events("runs/nowhere", [{"a": 1}])
        with pytest.raises(StreamNotFound):
            await s.close_stream("runs/nowhere")

    async def test_close_stream(self, stores: Any) -> None:
        s = stores.streams
        await s.create_stream("runs/r")
        await s.append_events("runs/r", [{"type": "run_end"}])
        await s.close_stream("runs/r")
        await s.close_stream("runs/r")  # idempotent
        assert (await s.get_stream_meta("runs/r")).closed
        res = await s.read_events("runs/r")
        assert res.closed and res.up_to_date and len(res.events) == 1
        with pytest.raises(StreamClosed):
            await s.append_events("runs/r", [{"type": "late"}])
        assert (await s.get_stream_meta("runs/r")).length == 1

    async def test_subscribe_notifies_appends_and_close(self, stores: Any) -> None:
        s = stores.streams
        await s.create_stream("runs/a")
        await s.create_stream("runs/b")
        calls: list[str] = []
        unsubscribe = s.subscribe("runs/a", calls.append)

        def broken(_path: str) -> None:
            raise RuntimeError("listener bug")

        unsubscribe_broken = s.subscribe("runs/a", broken)
        await s.append_events("runs/a", [{"x": 1}])
        await s.append_events("runs/b", [{"x": 1}])
        await s.close_stream("runs/a")
        await asyncio.sleep(0)  # listeners may be scheduled on the loop
        assert calls == ["runs/a", "runs/a"]
        unsubscribe()
        unsubscribe_broken()
        await s.create_stream("runs/c")
        s.subscribe("runs/c", calls.append)
        await s.append_events("runs/c", [{"x": 1}])
        await asyncio.sleep(0)
        assert calls == ["runs/a", "runs/a", "runs/c"]

    async def test_concurrent_appends_get_consecutive_offsets(self, stores: Any) -> None:
        s = stores.streams
        await s.create_stream("agents/x/1")

        async def writer(w: int) -> str:
            return await s.append_events("agents/x/1", [{"w": w, "i": i} for i in range(3)])

        offsets = await asyncio.gather(*(writer(w) for w in range(20)))
        assert sorted(offsets) == [format_offset(3 * k) for k in range(1, 21)]
        events = (await s.read_events("agents/x/1")).events
        assert len(events) == 60
        for k in range(20):  # each batch lands contiguously and in order
            batch = events[3 * k: 3 * k + 3]
            assert len({e["w"] for e in batch}) == 1 and [e["i"] for e in batch] == [0, 1, 2]

    # -- snapshots ------------------------------------------------------------------------------

    async def test_snapshot_blobs(self, stores: Any) -> None:
        snaps = stores.snapshots
        assert await snaps.load_snapshot("agents/a/1") is None
        blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
        await snaps.save_snapshot("agents/a/1", blob)
        assert await snaps.load_snapshot("agents/a/1") == blob
        await snaps.save_snapshot("agents/a/1", b"\x00small")
        assert await snaps.load_snapshot("agents/a/1") == b"\x00small"
        await snaps.save_snapshot("agents/a/2", b"")
        assert await snaps.load_snapshot("agents/a/2") == b""
        await snaps.delete_snapshot("agents/a/1")
        assert await snaps.load_snapshot("agents/a/1") is None
        await snaps.delete_snapshot("agents/a/1")

    # -- submissions ------------------------------------------------------------------------------

    async def test_admission_order_and_one_running_per_instance(self, stores: Any) -> None:
        sub = stores.submissions
        a1, created = await sub.admit("agents/a/1", {"message": "first"}, now=at(0))
        assert created and a1.status == "queued" and a1.attempts == 0 and a1.kind == "prompt"
        a2, _ = await sub.admit("agents/a/1", {"message": "second"}, now=at(1))
        b1, _ = await sub.admit("agents/b/1", {"message": "other"}, now=at(2))
        assert a2.seq > a1.seq

        got = await sub.claim_next("c1", now=at(3))
        assert got.submission_id == a1.submission_id and got.status == "running"
        assert got.attempts == 1 and got.lease_owner == "c1"
        # a2 waits behind the running a1; the other instance is independent.
        got_b = await sub.claim_next("c2", now=at(3))
        assert got_b.submission_id == b1.submission_id
        assert await sub.claim_next("c2", now=at(4)) is None
        assert await sub.claim(a2.submission_id, "c2", now=at(4)) is None

        assert await sub.settle(a1.submission_id, "c1", status="completed", result={"text": "ok"}, now=at(5))
        got = await sub.claim_next("c2", now=at(6))
        assert got.submission_id == a2.submission_id and got.lease_owner == "c2"
        done = await sub.get(a1.submission_id)
        assert done.status == "completed" and done.result == {"text": "ok"} and done.settled_at is not None
        listed = await sub.list_for_instance("agents/a/1")
        assert [s.submission_id for s in listed] == [a1.submission_id, a2.submission_id]
        assert [s.status for s in listed] == ["completed", "running"]
        assert await sub.get("sub_missing") is None

    async def test_admission_bound_per_instance(self, stores: Any) -> None:
        sub, streams = stores.submissions, stores.streams
        first = [(await sub.admit("agents/a/1", {"n": n}, max_queued=3, now=at(n)))[0] for n in range(3)]
        length = (await streams.get_stream_meta("agents/a/1")).length
        with pytest.raises(QueueFull) as refused:
            await sub.admit("agents/a/1", {"n": 3}, max_queued=3, now=at(3))
        assert refused.value.instance == "agents/a/1" and refused.value.limit == 3
        # nothing of the refused admission is kept: no row, no event, no gap in seq
        assert len(await sub.list_for_instance("agents/a/1")) == 3
        assert (await streams.get_stream_meta("agents/a/1")).length == length
        await sub.admit("agents/b/1", "other instance", max_queued=3, now=at(3))
        await sub.admit("agents/a/1", "no bound given", now=at(3))  # callers without a bound are not limited
        with pytest.raises(QueueFull):
            await sub.admit("agents/a/1", {"n": 4}, max_queued=4, now=at(4))
        # settling the head makes room; the next admission follows in order
        await sub.claim_next("c1", now=at(5))
        assert await sub.settle(first[0].submission_id, "c1", status="completed", now=at(5))
        nxt, created = await sub.admit("agents/a/1", {"n": 5}, max_queued=4, now=at(6))
        assert created and nxt.seq == max(s.seq for s in await sub.list_for_instance("agents/a/1"))
        # a replay of an admitted dispatch is answered even when the instance is full
        d, _ = await sub.admit("agents/c/1", "d", kind="dispatch", dispatch_id="dsp_full", max_queued=1, now=at(7))
        again, created = await sub.admit("agents/c/1", "d", kind="dispatch", dispatch_id="dsp_full", max_queued=1,
                                         now=at(8))
        assert not created and again.submission_id == d.submission_id
        with pytest.raises(ValueError):
            await sub.admit("agents/c/1", "x", max_queued=0)

    async def test_concurrent_admissions_never_overshoot_the_bound(self, stores: Any) -> None:
        sub = stores.submissions

        async def one(n: int) -> bool:
            try:
                await sub.admit("agents/busy/1", {"n": n}, max_queued=5, now=at(0))
            except QueueFull:
                return False
            return True

        results = await asyncio.gather(*(one(n) for n in range(20)))
        assert sum(results) == 5
        listed = await sub.list_for_instance("agents/busy/1")
        assert sorted(s.seq for s in listed) == list(range(listed[0].seq, listed[0].seq + 5))

    async def test_count_unsettled(self, stores: Any) -> None:
        sub = stores.submissions
        assert await sub.count_unsettled() == 0
        a, _ = await sub.admit("agents/a/1", "x", now=at(0))
        await sub.admit("agents/a/1", "y", now=at(0))
        await sub.admit("agents/b/1", "z", now=at(0))
        assert await sub.count_unsettled() == 3
        await sub.claim(a.submission_id, "c1", now=at(1))
        assert await sub.count_unsettled() == 3  # running counts too
        await sub.settle(a.submission_id, "c1", status="completed", now=at(2))
        assert await sub.count_unsettled() == 2

    async def test_claim_specific_submission(self, stores: Any) -> None:
        sub = stores.submissions
        s1, _ = await sub.admit("agents/a/1", "one", now=at(0))
        s2, _ = await sub.admit("agents/a/1", "two", now=at(0))
        assert await sub.claim(s2.submission_id, "c1", now=at(1)) is None  # not the head
        got = await sub.claim(s1.submission_id, "c1", now=at(1))
        assert got.status == "running" and got.lease_owner == "c1"
        assert await sub.claim(s1.submission_id, "c2", now=at(2)) is None  # lease is live
        assert await sub.claim("sub_missing", "c1", now=at(2)) is None

    async def test_concurrent_claims_never_both_succeed(self, stores: Any) -> None:
        sub = stores.submissions
        heads = set()
        for i in range(5):
            s, _ = await sub.admit(f"agents/a/{i}", {"i": i}, now=at(0))
            heads.add(s.submission_id)
            await sub.admit(f"agents/a/{i}", {"i": i, "second": True}, now=at(0))
        claims = await asyncio.gather(*(sub.claim_next(f"c{k}", now=at(1)) for k in range(25)))
        won = [c for c in claims if c is not None]
        assert {c.submission_id for c in won} == heads and len(won) == 5
        assert all(c.status == "running" and c.attempts == 1 for c in won)
        # the same head claimed by many at once, by id
        s, _ = await sub.admit("agents/solo/1", "x", now=at(0))
        racers = await asyncio.gather(*(sub.claim(s.submission_id, f"r{k}", now=at(1)) for k in range(10)))
        assert sum(r is not None for r in racers) == 1

    async def test_expired_lease_is_taken_over(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "work", now=at(0))
        await sub.claim_next("c1", lease_s=30, now=at(0))
        assert await sub.claim_next("c2", now=at(29)) is None
        taken = await sub.claim_next("c2", now=at(30.5))
        assert taken.submission_id == s.submission_id and taken.lease_owner == "c2" and taken.attempts == 2
        # the old owner is fenced off
        assert await sub.renew("c1", [s.submission_id], now=at(31)) == []
        assert not await sub.settle(s.submission_id, "c1", status="completed", now=at(31))
        assert await sub.settle(s.submission_id, "c2", status="completed", result=1, now=at(32))

    async def test_renew_extends_owned_leases_only(self, stores: Any) -> None:
        sub = stores.submissions
        s1, _ = await sub.admit("agents/a/1", "x", now=at(0))
        s2, _ = await sub.admit("agents/b/1", "y", now=at(0))
        q, _ = await sub.admit("agents/c/1", "z", now=at(0))
        await sub.claim(s1.submission_id, "c1", lease_s=30, now=at(0))
        await sub.claim(s2.submission_id, "c2", lease_s=30, now=at(0))
        renewed = await sub.renew("c1", [s1.submission_id, s2.submission_id, q.submission_id, "sub_x"],
                                  lease_s=30, now=at(20))
        assert renewed == [s1.submission_id]
        assert await sub.claim(s1.submission_id, "c9", now=at(40)) is None  # renewed until 50
        assert (await sub.claim(s2.submission_id, "c9", now=at(40))).lease_owner == "c9"
        assert (await sub.claim(s1.submission_id, "c9", now=at(50))).lease_owner == "c9"
        assert await sub.renew("c1", [], now=at(51)) == []

    async def test_settle_only_by_owner_and_idempotent(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "x", now=at(0))
        assert not await sub.settle(s.submission_id, "c1", status="completed", now=at(0))  # not claimed
        await sub.claim_next("c1", now=at(0))
        assert not await sub.settle(s.submission_id, "intruder", status="completed", now=at(1))
        assert await sub.settle(s.submission_id, "c1", status="failed", error={"type": "x", "message": "m"},
                                now=at(1))
        assert await sub.settle(s.submission_id, "c1", status="failed", error={"type": "x", "message": "m"},
                                now=at(2))
        assert not await sub.settle(s.submission_id, "c1", status="completed", now=at(2))
        got = await sub.get(s.submission_id)
        assert got.status == "failed" and got.error == {"type": "x", "message": "m"}
        assert not await sub.settle("sub_missing", "c1", status="completed")
        with pytest.raises(ValueError):
            await sub.settle(s.submission_id, "c1", status="queued")

    async def test_settle_is_fenced_by_attempt(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "x", now=at(0))
        first = await sub.claim_next("c1", lease_s=30, now=at(0))
        assert first.attempts == 1
        # c1's lease expires and c1 itself claims the submission again: attempt 2
        again = await sub.claim_next("c1", lease_s=30, now=at(31))
        assert again.submission_id == s.submission_id and again.attempts == 2
        assert not await sub.settle(s.submission_id, "c1", status="completed", result="stale", attempt=1, now=at(32))
        assert await sub.settle(s.submission_id, "c1", status="completed", result="fresh", attempt=2, now=at(33))
        assert await sub.settle(s.submission_id, "c1", status="completed", result="fresh", attempt=2, now=at(34))
        assert not await sub.settle(s.submission_id, "c1", status="completed", attempt=1, now=at(35))
        assert (await sub.get(s.submission_id)).result == "fresh"

    async def test_lifecycle_events_are_appended_once_with_the_state_change(self, stores: Any) -> None:
        sub, streams = stores.submissions, stores.streams
        path = "agents/helper/u1"
        woke: list[str] = []
        streams.subscribe(path, woke.append)
        s, created = await sub.admit(path, {"message": "hi"}, kind="dispatch", dispatch_id="dsp_ev", now=at(0))
        assert created and woke  # the stream was created by the admission, and its readers woken
        await sub.admit(path, {"message": "hi"}, kind="dispatch", dispatch_id="dsp_ev", now=at(1))  # a replay
        events = (await streams.read_events(path)).events
        assert [e["type"] for e in events] == ["submission_admitted"]
        assert events[0]["submissionId"] == s.submission_id and events[0]["dispatchId"] == "dsp_ev"
        assert events[0]["agentName"] == "helper" and events[0]["instanceId"] == "u1"
        assert events[0]["input"] == {"message": "hi"} and events[0]["v"] == 3 and events[0]["eventIndex"] == 0
        await sub.claim_next("c1", now=at(2))
        await streams.append_events(path, [{"type": "operation_start"}])
        assert await sub.settle(s.submission_id, "c1", status="completed", result={"text": "ok"}, now=at(3),
                                event_index=7)
        assert await sub.settle(s.submission_id, "c1", status="completed", result={"text": "ok"}, now=at(4),
                                event_index=7)
        events = (await streams.read_events(path)).events
        assert [e["type"] for e in events] == ["submission_admitted", "operation_start", "submission_settled"]
        settled = events[-1]
        assert settled["outcome"] == "completed" and settled["result"] == {"text": "ok"} and "error" not in settled
        assert settled["submissionId"] == s.submission_id and settled["eventIndex"] == 7 and settled["v"] == 3
        # a head exhausted on claim: its settlement, with the error, goes on the stream in the same step
        t, _ = await sub.admit(path, "late", timeout_s=1, now=at(10))
        failed = await sub.claim_next("c1", now=at(20))
        assert failed.submission_id == t.submission_id and failed.status == "failed"
        tail = (await streams.read_events(path)).events[3:]
        assert [e["type"] for e in tail] == ["submission_admitted", "submission_settled"]
        assert tail[1]["error"]["type"] == ERROR_DEADLINE_EXCEEDED and tail[1]["outcome"] == "failed"
        assert "result" not in tail[1]

    async def test_attempts_are_bounded(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "x", max_attempts=2, now=at(0))
        nxt, _ = await sub.admit("agents/a/1", "next", now=at(0))
        assert (await sub.claim_next("c1", lease_s=10, now=at(0))).attempts == 1
        assert (await sub.claim_next("c2", lease_s=10, now=at(11))).attempts == 2
        failed = await sub.claim_next("c3", lease_s=10, now=at(22))
        assert failed.submission_id == s.submission_id and failed.status == "failed"
        assert failed.error["type"] == ERROR_ATTEMPTS_EXHAUSTED and failed.attempts == 2
        assert failed.settled_at is not None
        # the instance moves on
        assert (await sub.claim_next("c3", now=at(23))).submission_id == nxt.submission_id

    async def test_deadline_fails_the_head(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "x", timeout_s=60, now=at(0))
        failed = await sub.claim_next("c1", now=at(61))
        assert failed.submission_id == s.submission_id and failed.status == "failed"
        assert failed.error["type"] == ERROR_DEADLINE_EXCEEDED and failed.attempts == 0
        assert await sub.claim_next("c1", now=at(62)) is None

    async def test_dispatch_idempotency_and_conflict(self, stores: Any) -> None:
        sub = stores.submissions
        first, created = await sub.admit("agents/a/1", {"b": 1, "a": [1, 2]}, kind="dispatch",
                                         dispatch_id="dsp_1", now=at(0))
        assert created and first.kind == "dispatch"
        receipt = first.receipt()
        assert receipt == DispatchReceipt(dispatch_id="dsp_1", accepted_at=first.accepted_at)
        assert receipt.model_dump(by_alias=True) == {"dispatchId": "dsp_1", "acceptedAt": first.accepted_at}
        again, created = await sub.admit("agents/a/1", {"a": [1, 2], "b": 1}, kind="dispatch",
                                         dispatch_id="dsp_1", now=at(100))
        assert not created and again.submission_id == first.submission_id and again.receipt() == receipt
        with pytest.raises(DispatchConflictError, match="dsp_1"):
            await sub.admit("agents/a/1", {"b": 2}, kind="dispatch", dispatch_id="dsp_1")
        with pytest.raises(DispatchConflictError):
            await sub.admit("agents/a/2", {"b": 1, "a": [1, 2]}, kind="dispatch", dispatch_id="dsp_1")
        assert len(await sub.list_for_instance("agents/a/1")) == 1
        assert (await sub.get_by_dispatch_id("dsp_1")).submission_id == first.submission_id
        generated, created = await sub.admit("agents/a/1", None, kind="dispatch")
        assert created and generated.dispatch_id and generated.input is None
        # concurrent replays of one dispatch admit it exactly once
        results = await asyncio.gather(*(sub.admit("agents/r/1", {"k": 1}, kind="dispatch", dispatch_id="dsp_r")
                                         for _ in range(10)))
        assert sum(created for _, created in results) == 1
        assert len({s.submission_id for s, _ in results}) == 1
        with pytest.raises(ValueError):
            await sub.admit("agents/a/1", "x", kind="prompt", dispatch_id="dsp_2")

    async def test_journal_is_fenced_by_attempt(self, stores: Any) -> None:
        sub = stores.submissions
        s, _ = await sub.admit("agents/a/1", "x", now=at(0))
        assert not await sub.append_journal(s.submission_id, 1, {"type": "turn"})  # not running yet
        await sub.claim_next("c1", lease_s=30, now=at(0))
        assert await sub.append_journal(s.submission_id, 1, {"type": "turn", "turn": 1})
        assert await sub.append_journal(s.submission_id, 1, {"type": "tool_call", "id": "t1", "output": "ok"})
        await sub.claim_next("c2", lease_s=30, now=at(31))  # takeover: attempt 2
        assert not await sub.append_journal(s.submission_id, 1, {"type": "turn", "turn": 2, "zombie": True})
        assert await sub.append_journal(s.submission_id, 2, {"type": "turn", "turn": 2})
        assert await sub.journal(s.submission_id) == [
            {"type": "turn", "turn": 1},
            {"type": "tool_call", "id": "t1", "output": "ok"},
            {"type": "turn", "turn": 2},
        ]
        await sub.settle(s.submission_id, "c2", status="completed", now=at(32))
        assert not await sub.append_journal(s.submission_id, 2, {"type": "late"})
        assert await sub.journal("sub_missing") == []

    async def test_submission_subscribe(self, stores: Any) -> None:
        sub = stores.submissions
        seen: list[str] = []
        unsubscribe = sub.subscribe(seen.append)
        s, _ = await sub.admit("agents/a/1", "x", now=at(0))
        await asyncio.sleep(0)
        assert "agents/a/1" in seen  # a runnable head
        await sub.admit("agents/a/1", "y", now=at(0))
        await sub.claim_next("c1", now=at(0))
        await asyncio.sleep(0)  # what the admissions sent is in before the settlement's
        seen.clear()
        await sub.settle(s.submission_id, "c1", status="completed", now=at(1))
        await asyncio.sleep(0)
        assert "agents/a/1" in seen  # the settlement made the queued "y" the runnable head
        # (a settlement that leaves its instance nothing to run need not notify; a store may)
        unsubscribe()
        seen.clear()
        await sub.admit("agents/b/1", "z", now=at(2))
        await asyncio.sleep(0)
        assert seen == []

    # -- a journal entry with a session save (optional: the SQL core's stores, flue.runtime.instances) --

    async def test_a_journal_step_goes_into_a_session_save_s_transaction(self, stores: Any) -> None:
        sub, sessions = stores.submissions, stores.sessions
        if not hasattr(sub, "journal_step") or not hasattr(sessions, "save_checked"):
            pytest.skip("the adapter has no journal_step / save_checked (a prompt's last entry is a commit of its own)")
        s, _ = await sub.admit("agents/j/1", "x", now=at(0))
        await sub.claim_next("c1", lease_s=30, now=at(0))
        first = SessionData(messages=[{"role": "user", "content": "hi"}])
        assert await sessions.save_checked("k", "k#marker", lambda _marker: first,
                                           first=sub.journal_step(s.submission_id, 1, {"type": "turn", "n": 1}))
        assert await sub.journal(s.submission_id) == [{"type": "turn", "n": 1}]
        assert (await sessions.load("k")).messages == first.messages

        def refuse(_marker: Any) -> SessionData:
            raise RuntimeError("the session was deleted meanwhile")

        with pytest.raises(RuntimeError):  # the save refused: the entry went down with it
            await sessions.save_checked("k", "k#marker", refuse,
                                        first=sub.journal_step(s.submission_id, 1, {"type": "turn", "n": 2}))
        await sub.claim_next("c2", lease_s=30, now=at(31))  # a takeover: attempt 1 is fenced off
        later = SessionData(messages=[*first.messages, {"role": "assistant", "content": "late"}])
        assert not await sessions.save_checked("k", "k#marker", lambda _marker: later,
                                               first=sub.journal_step(s.submission_id, 1, {"type": "turn", "n": 3}))
        assert await sub.journal(s.submission_id) == [{"type": "turn", "n": 1}]
        assert (await sessions.load("k")).messages == first.messages  # the fenced attempt saved nothing

    # -- fast recovery (optional methods: flue.runtime.replica) ---------------------------

    async def test_expire_leases_frees_a_dead_process_s_claims_only(self, stores: Any) -> None:
        sub = stores.submissions
        if not hasattr(sub, "expire_leases"):
            pytest.skip("the adapter has no expire_leases (restarts wait for leases to run out)")
        dead, _ = await sub.admit("agents/a/1", "x", now=at(0))
        other, _ = await sub.admit("agents/a/2", "x", now=at(0))
        mine, _ = await sub.admit("agents/a/3", "x", now=at(0))
        assert (await sub.claim(dead.submission_id, "r1~old", lease_s=30, now=at(0))) is not None
        assert (await sub.claim(other.submission_id, "r1x~old", lease_s=30, now=at(0))) is not None
        assert (await sub.claim(mine.submission_id, "r1~new", lease_s=30, now=at(0))) is not None
        assert await sub.expire_leases("r1~", keep="r1~new", now=at(1)) == [dead.submission_id]
        taken = await sub.claim_next("r1~new", now=at(1))
        assert taken.submission_id == dead.submission_id and taken.attempts == 2
        assert await sub.claim_next("r1~new", now=at(1)) is None  # the others' leases still hold
        assert await sub.renew("r1~new", [mine.submission_id], now=at(2)) == [mine.submission_id]
        assert await sub.expire_leases("r1~", keep="r1~new", now=at(2)) == []

    async def test_expire_run_leases_frees_a_dead_process_s_runs_only(self, stores: Any) -> None:
        runs = stores.runs
        if not hasattr(runs, "expire_run_leases"):
            pytest.skip("the adapter has no expire_run_leases (restarts wait for leases to run out)")
        await runs.create_run(_run("run_dead", "hello", 0), owner="r1~old", lease_s=30, now=at(0))
        await runs.create_run(_run("run_other", "hello", 0), owner="r2~old", lease_s=30, now=at(0))
        await runs.create_run(_run("run_mine", "hello", 0), owner="r1~new", lease_s=30, now=at(0))
        await runs.create_run(_run("run_free", "hello", 0))
        assert await runs.expire_run_leases("r1~", keep="r1~new", now=at(1)) == ["run_dead"]
        taken = await runs.claim_interrupted_run("r1~new", now=at(1))
        assert taken is not None and taken.run_id == "run_dead"
        assert await runs.claim_interrupted_run("r1~new", now=at(1)) is None

    async def test_open_and_close_run_write_the_record_and_its_stream_together(self, stores: Any) -> None:
        runs, streams = stores.runs, stores.streams
        if not hasattr(runs, "open_run"):
            pytest.skip("the adapter has no open_run/close_run (the runtime makes the separate calls)")
        rec = _run("run_1", "hello", 0, payload={"a": 1})
        assert await runs.open_run(rec, "runs/run_1", owner="p1", lease_s=30, now=at(0)) == rec
        meta = await streams.get_stream_meta("runs/run_1")
        assert meta is not None and meta.length == 0 and not meta.closed
        assert await runs.claim_interrupted_run("p2", now=at(1)) is None  # owned: leased like create_run's
        await streams.append_events("runs/run_1", [{"type": "run_start"}])
        await runs.close_run("run_1", "runs/run_1", [{"type": "a"}, {"type": "run_end"}], status="completed",
                             result={"ok": True}, ended_at="2030-01-01T12:00:01.000Z", duration_ms=1000.0)
        read = await streams.read_events("runs/run_1")
        assert [e["type"] for e in read.events] == ["run_start", "a", "run_end"] and read.closed
        got = await runs.get_run("run_1")
        assert got.status == "completed" and got.result == {"ok": True} and got.duration_ms == 1000.0
        assert await runs.claim_interrupted_run("p2", now=at(100)) is None  # ending ended the lease

    async def test_close_run_after_a_recovery_ended_it_changes_nothing(self, stores: Any) -> None:
        runs, streams = stores.runs, stores.streams
        if not hasattr(runs, "close_run"):
            pytest.skip("the adapter has no open_run/close_run (the runtime makes the separate calls)")
        await runs.open_run(_run("run_1", "hello", 0), "runs/run_1", owner="p1", lease_s=1, now=at(0))
        # another server judged p1 dead: it ended the run as interrupted and closed its stream
        assert (await runs.claim_interrupted_run("p2", now=at(5))).run_id == "run_1"
        await streams.append_events("runs/run_1", [{"type": "run_end", "isError": True}])
        await streams.close_stream("runs/run_1")
        await runs.end_run("run_1", status="errored", error={"name": "RunInterrupted", "message": "m"},
                           ended_at="2030-01-01T12:00:05.000Z", duration_ms=5000.0)
        await runs.close_run("run_1", "runs/run_1", [{"type": "run_end", "isError": False}], status="completed",
                             result=1, ended_at="2030-01-01T12:00:06.000Z", duration_ms=6000.0)
        read = await streams.read_events("runs/run_1")
        assert [e.get("isError") for e in read.events] == [True] and read.closed
        got = await runs.get_run("run_1")
        assert got.status == "errored" and got.error == {"name": "RunInterrupted", "message": "m"}

    async def test_admission_rejects_bad_input(self, stores: Any) -> None:
        sub = stores.submissions
        with pytest.raises((TypeError, ValueError)):
            await sub.admit("agents/a/1", {"x": object()})
        with pytest.raises(ValueError):
            await sub.admit("", "x")
        with pytest.raises(ValueError):
            await sub.admit("agents/a/1", "x", max_attempts=0)
        assert await sub.list_for_instance("agents/a/1") == []
