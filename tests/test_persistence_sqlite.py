"""The built-in SQLite adapter: the contract suite (in memory and on disk) plus file behaviour."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from flue.config import PersistenceConfig
from flue.persistence.base import SchemaVersionError, SessionData, format_offset
from flue.persistence.plugin import PersistenceConfigError, flue_persistence, open_persistence
from flue.persistence.sqlite import SQLiteAdapter
from flue.project import load_project
from flue.testing.persistence_contract import PersistenceContract, at


class TestSQLiteMemoryContract(PersistenceContract):
    @pytest.fixture
    async def adapter(self):
        adapter = SQLiteAdapter()
        yield adapter
        await adapter.close()

    async def stamp_schema_version(self, adapter: SQLiteAdapter, value: str) -> None:
        await adapter._execute_for_tests("UPDATE flue_meta SET value = ? WHERE key = 'schema_version'", (value,))


class TestSQLiteFileContract(TestSQLiteMemoryContract):
    @pytest.fixture
    async def adapter(self, tmp_path: Path):
        adapter = SQLiteAdapter(tmp_path / "state" / "flue.db")
        yield adapter
        await adapter.close()


async def test_file_state_survives_reopen_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "flue.db"
    first = SQLiteAdapter(path)
    await first.migrate()
    stores = await first.connect()
    await stores.sessions.save("agents/a/1/default/default", SessionData(messages=[{"role": "user", "content": "hi"}]))
    await stores.streams.create_stream("runs/r1")
    await stores.streams.append_events("runs/r1", [{"type": "run_start"}])
    sub, _ = await stores.submissions.admit("agents/a/1", {"message": "later"}, kind="dispatch", dispatch_id="d1")
    await stores.snapshots.save_snapshot("agents/a/1", b"fs-bytes")
    await first.close()

    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    second = SQLiteAdapter(path)
    await second.migrate()
    stores = await second.connect()
    assert (await stores.sessions.load("agents/a/1/default/default")).messages[0]["content"] == "hi"
    assert (await stores.streams.read_events("runs/r1")).events == [{"type": "run_start"}]
    replay, created = await stores.submissions.admit("agents/a/1", {"message": "later"}, kind="dispatch",
                                                     dispatch_id="d1")
    assert not created and replay.receipt() == sub.receipt()
    assert (await stores.submissions.claim_next("after-restart")).submission_id == sub.submission_id
    assert await stores.snapshots.load_snapshot("agents/a/1") == b"fs-bytes"
    await second.close()


async def test_newer_file_refuses_to_open_with_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "flue.db"
    adapter = SQLiteAdapter(path)
    await adapter.migrate()
    await adapter.close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE flue_meta SET value = '7' WHERE key = 'schema_version'")
    newer = SQLiteAdapter(path)
    with pytest.raises(SchemaVersionError) as info:
        await newer.migrate()
    message = str(info.value)
    assert str(path) in message and "newer Flue (schema 7, this Flue knows 1)" in message
    assert "upgrade Flue or point persistence at another database" in message
    with pytest.raises(SchemaVersionError):
        await newer.connect()
    await newer.close()


async def test_migrate_adds_the_run_lease_columns_to_an_existing_database(tmp_path: Path) -> None:
    """A version-1 file written before runs had owners gets the columns; its runs are kept."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(
        "CREATE TABLE flue_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO flue_meta VALUES ('schema_version', '1');"
        "CREATE TABLE flue_runs (run_id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, "
        "payload TEXT NOT NULL, result TEXT, error TEXT, started_at TEXT NOT NULL, started_ms INTEGER NOT NULL, "
        "ended_at TEXT, duration_ms REAL);"
        "INSERT INTO flue_runs VALUES ('run_old', 'hello', 'active', '{}', NULL, NULL, "
        "'2030-01-01T12:00:00.000Z', 1893499200000, NULL, NULL);"
    )
    conn.close()
    adapter = SQLiteAdapter(path)
    try:
        await adapter.migrate()
        await adapter.migrate()  # idempotent
        stores = await adapter.connect()
        assert (await stores.runs.get_run("run_old")).status == "active"
        assert await stores.runs.claim_interrupted_run("p1", now=at(10**6)) is None  # no owner: no lease
        old = await stores.runs.get_run("run_old")
        fresh = old.model_copy(update={"run_id": "run_new"})
        await stores.runs.create_run(fresh, owner="p0", lease_s=1, now=at(0))
        assert (await stores.runs.claim_interrupted_run("p1", now=at(5))).run_id == "run_new"
    finally:
        await adapter.close()


async def test_connect_without_migrate_says_so(tmp_path: Path) -> None:
    adapter = SQLiteAdapter(tmp_path / "empty.db")
    with pytest.raises(SchemaVersionError, match="migrate"):
        await adapter.connect()
    await adapter.close()


async def test_two_adapters_on_one_file_claim_atomically(tmp_path: Path) -> None:
    """Two adapters = two connections on two threads, like two processes sharing the file."""
    path = tmp_path / "shared.db"
    a, b = SQLiteAdapter(path), SQLiteAdapter(path)
    await a.migrate()
    await b.migrate()
    sa, sb = await a.connect(), await b.connect()
    ids = set()
    for i in range(10):
        s, _ = await sa.submissions.admit(f"agents/x/{i}", i, now=at(0))
        ids.add(s.submission_id)
    claims = await asyncio.gather(
        *(store.submissions.claim_next(f"{name}{k}", now=at(1))
          for k in range(15) for name, store in (("a", sa), ("b", sb)))
    )
    won = [c.submission_id for c in claims if c is not None]
    assert sorted(won) == sorted(ids)
    # appends from both adapters interleave without colliding
    await sa.streams.create_stream("runs/race")
    offsets = await asyncio.gather(
        *(store.streams.append_events("runs/race", [{"k": k}]) for k in range(10) for store in (sa, sb))
    )
    assert len(set(offsets)) == 20 and (await sb.streams.get_stream_meta("runs/race")).length == 20
    await a.close()
    await b.close()


async def test_a_database_locked_by_another_connection_never_blocks_the_event_loop(tmp_path: Path) -> None:
    """Statements run on the loop's own connection, which never waits for a lock: while another
    process (here a raw connection on a thread) holds the write lock, reads still answer at once,
    a write waits on the worker thread (the loop keeps ticking) and lands once the lock is free."""
    adapter = SQLiteAdapter(tmp_path / "locked.db")
    await adapter.migrate()
    stores = await adapter.connect()
    await stores.streams.create_stream("runs/r")
    locked, release = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        conn = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(5)
        conn.execute("ROLLBACK")
        conn.close()

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert await asyncio.to_thread(locked.wait, 5)
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def tick() -> None:
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticker = asyncio.create_task(tick())
    append = asyncio.create_task(stores.streams.append_events("runs/r", [{"type": "a"}]))
    assert (await stores.streams.get_stream_meta("runs/r")).length == 0  # reads do not wait for writers
    await asyncio.sleep(0.4)
    assert not append.done()  # waiting for the lock, on the worker thread
    release.set()
    assert await asyncio.wait_for(append, 5) == format_offset(1)
    ticker.cancel()
    await asyncio.to_thread(holder.join, 5)
    assert len(gaps) > 10 and max(gaps) < 0.2, gaps  # the loop was never held up by the lock
    assert [e["type"] for e in (await stores.streams.read_events("runs/r")).events] == ["a"]
    await adapter.close()
    with pytest.raises(RuntimeError, match="closed"):
        await adapter.migrate()


async def test_batched_writes_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    """``run_batched`` writes of one loop iteration commit together; one that raises is rolled back
    alone (its savepoint) and its caller gets the error; the others are stored."""
    from flue.persistence.sql.core import Mode, Stmt

    adapter = SQLiteAdapter(tmp_path / "batch.db")
    await adapter.migrate()
    stores = await adapter.connect()
    db = stores.runs._db
    await stores.streams.create_stream("runs/b")
    commits = adapter._worker._commits

    def insert(n: int, fail: bool = False):  # type: ignore[no-untyped-def]
        yield Stmt("INSERT INTO flue_events (path, seq, data) VALUES ('runs/b', ?, '{}')", (n,))
        if fail:
            raise ValueError("no")
        return n

    results = await asyncio.gather(
        *(db.run_batched(insert(n, fail=n == 3), Mode.TRANSACTION) for n in range(1, 7)), return_exceptions=True
    )
    assert [r if not isinstance(r, ValueError) else "error" for r in results] == [1, 2, "error", 4, 5, 6]
    rows = await adapter._execute_for_tests("SELECT seq FROM flue_events WHERE path = 'runs/b' ORDER BY seq")
    assert [r[0] for r in rows] == [1, 2, 4, 5, 6]
    assert adapter._worker._commits - commits == 1  # one transaction for the six
    await adapter.close()


async def test_the_wal_is_checkpointed_while_the_loop_writes(tmp_path: Path) -> None:
    """The loop's connection leaves WAL checkpoints (and their fsync) to the worker thread; they
    still happen, so the WAL file stops growing."""
    adapter = SQLiteAdapter(tmp_path / "wal.db")
    await adapter.migrate()
    stores = await adapter.connect()
    await stores.streams.create_stream("runs/r")
    event = {"type": "text_delta", "text": "x" * 3000}  # about a page per append
    for _ in range(4000):
        await stores.streams.append_events("runs/r", [event])
        await asyncio.sleep(0)  # as a server's loop does between requests
    await asyncio.sleep(0.2)  # the last checkpoint job
    wal = tmp_path / "wal.db-wal"
    assert wal.stat().st_size < 16 * 2**20, wal.stat().st_size  # without checkpoints: 88 MB
    assert (await stores.streams.get_stream_meta("runs/r")).length == 4000
    await adapter.close()


async def test_listener_from_another_loop_is_called_on_its_loop() -> None:
    """A subscriber registered on loop A is woken on loop A when loop B appends."""
    adapter = SQLiteAdapter()
    await adapter.migrate()
    stores = await adapter.connect()
    await stores.streams.create_stream("runs/x")
    woke = threading.Event()
    other_loop_thread: list[str] = []

    def subscriber() -> None:
        async def main() -> None:
            got = asyncio.Event()
            loop = asyncio.get_running_loop()

            def listener(_path: str) -> None:
                assert asyncio.get_running_loop() is loop
                other_loop_thread.append(threading.current_thread().name)
                got.set()

            stores.streams.subscribe("runs/x", listener)
            woke.set()
            await asyncio.wait_for(got.wait(), 5)

        asyncio.run(main())

    t = threading.Thread(target=subscriber, name="other-loop")
    t.start()
    assert await asyncio.to_thread(woke.wait, 5)
    await stores.streams.append_events("runs/x", [{"a": 1}])
    await asyncio.to_thread(t.join, 5)
    assert other_loop_thread == ["other-loop"]
    await adapter.close()


def test_plugin_builds_sqlite_adapter_from_config(tmp_path: Path) -> None:
    memory = flue_persistence(config=PersistenceConfig(kind="sqlite"), root=tmp_path)
    assert isinstance(memory, SQLiteAdapter) and memory.path is None
    rel = flue_persistence(config=PersistenceConfig(kind="sqlite", path=".flue/state.db"), root=tmp_path)
    assert rel.path == tmp_path / ".flue" / "state.db"
    assert flue_persistence(config=PersistenceConfig(kind="postgres"), root=tmp_path) is None
    with pytest.raises(PersistenceConfigError, match="pth"):
        flue_persistence(config=PersistenceConfig(kind="sqlite", pth="x.db"), root=tmp_path)


async def test_open_persistence_through_the_project(write_tree) -> None:
    root = write_tree({"flue.yaml": "persistence:\n  kind: sqlite\n  path: data/state.db\n"})
    project = load_project(root)
    adapter, stores = await open_persistence(project)
    try:
        await stores.streams.create_stream("runs/r")
        assert (root / "data" / "state.db").exists()
    finally:
        await adapter.close()

    other = write_tree({"flue.yaml": "persistence: nosuchdb\n"}, base=root / "p2")
    with pytest.raises(PersistenceConfigError, match="no plugin provides persistence kind 'nosuchdb'"):
        await open_persistence(load_project(other))


async def test_a_claim_after_an_empty_one_still_finds_queued_and_expired_heads(tmp_path: Path) -> None:
    # after a claim that found nothing, the next one looks without the write lock first: that
    # look must see what the claim would (a queued head, a head whose lease ran out)
    adapter = SQLiteAdapter(tmp_path / "flue.db")
    await adapter.migrate()
    subs = (await adapter.connect()).submissions
    assert await subs.claim_next("c", now=at(0)) is None
    sub, _ = await subs.admit("agents/a/1", {"message": "hi"}, now=at(1))
    claimed = await subs.claim_next("c", lease_s=5, now=at(2))
    assert claimed is not None and claimed.submission_id == sub.submission_id
    assert await subs.claim_next("d", now=at(3)) is None  # running under a live lease
    taken = await subs.claim_next("d", now=at(10))  # the lease ran out: another coordinator takes over
    assert taken is not None and (taken.submission_id, taken.lease_owner, taken.attempts) == (sub.submission_id, "d", 2)
    await adapter.close()
