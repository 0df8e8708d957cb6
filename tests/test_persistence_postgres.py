"""The flue-postgres plugin against the PostgreSQL server on 127.0.0.1:5432 (database ``test``).

Every test gets its own schema, dropped afterwards. When the server is not
reachable the tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from fixtures.postgres import postgres_url

from flue.config import PersistenceConfig
from flue.persistence.base import SchemaVersionError
from flue.persistence.plugin import open_persistence
from flue.project import load_project
from flue.testing.persistence_contract import PersistenceContract, at

psycopg = pytest.importorskip("psycopg")
flue_postgres = pytest.importorskip("flue_postgres", reason="flue-postgres is not installed (pip install -e plugins/flue-postgres)")
from flue_postgres.adapter import PostgresAdapter  # noqa: E402
from flue_postgres.plugin import flue_persistence  # noqa: E402

pytestmark = pytest.mark.postgres

async def server_url() -> str:
    """The test server's URL (checked once per session), or a skip."""
    return await postgres_url()


async def admin(url: str, sql: str, params: tuple = ()) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(sql, params)


@pytest.fixture
async def schema():
    """A fresh schema name; the schema (created by migrate) is dropped afterwards."""
    url = await server_url()
    name = f"flue_test_{uuid.uuid4().hex[:12]}"
    yield url, name
    await admin(url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class TestPostgresContract(PersistenceContract):
    @pytest.fixture
    async def adapter(self, schema):
        url, name = schema
        adapter = PostgresAdapter(url, schema=name, pool_size=4)
        yield adapter
        await adapter.close()

    async def stamp_schema_version(self, adapter: PostgresAdapter, value: str) -> None:
        # A separate connection, as another Flue version would have written it.
        await admin(adapter.url, f'UPDATE "{adapter.schema}".flue_meta SET value = %s WHERE key = %s',
                    (value, "schema_version"))


async def test_two_adapters_never_both_claim(schema) -> None:
    """Two adapters = two pools of connections, like two server replicas."""
    url, name = schema
    a, b = PostgresAdapter(url, schema=name, pool_size=4), PostgresAdapter(url, schema=name, pool_size=4)
    try:
        await asyncio.gather(a.migrate(), b.migrate())  # concurrent migrations are serialized
        sa, sb = await a.connect(), await b.connect()
        heads = set()
        for i in range(8):
            s, _ = await sa.submissions.admit(f"agents/x/{i}", {"i": i}, now=at(0))
            heads.add(s.submission_id)
            await sb.submissions.admit(f"agents/x/{i}", {"i": i, "then": True}, now=at(0))
        for _round in range(3):  # repeat the race; each round every head is claimable again
            claims = await asyncio.gather(
                *(store.submissions.claim_next(f"{tag}{k}", now=at(100 * (_round + 1)))
                  for k in range(12) for tag, store in (("a", sa), ("b", sb)))
            )
            won = [c for c in claims if c is not None]
            assert sorted(c.submission_id for c in won) == sorted(heads)
            assert all(c.attempts == _round + 1 for c in won)
        # one head, claimed by id from both replicas at once
        solo, _ = await sa.submissions.admit("agents/solo/1", "x", now=at(0))
        racers = await asyncio.gather(
            *(store.submissions.claim(solo.submission_id, f"{tag}{k}", now=at(1))
              for k in range(6) for tag, store in (("a", sa), ("b", sb)))
        )
        assert sum(r is not None for r in racers) == 1
        # interleaved appends from both replicas get distinct, consecutive offsets
        await sa.streams.create_stream("runs/race")
        offsets = await asyncio.gather(
            *(store.streams.append_events("runs/race", [{"k": k}, {"k": k}]) for k in range(10)
              for store in (sa, sb))
        )
        assert len(set(offsets)) == 20 and (await sb.streams.get_stream_meta("runs/race")).length == 40
        # dispatch replays racing across replicas admit once
        results = await asyncio.gather(
            *(store.submissions.admit("agents/d/1", {"q": 1}, kind="dispatch", dispatch_id="dsp_race")
              for _ in range(5) for store in (sa, sb))
        )
        assert sum(created for _, created in results) == 1
    finally:
        await a.close()
        await b.close()


async def test_subscribers_are_woken_by_other_replicas(schema) -> None:
    url, name = schema
    a, b = PostgresAdapter(url, schema=name), PostgresAdapter(url, schema=name)
    try:
        await a.migrate()
        sa, sb = await a.connect(), await b.connect()
        await sa.streams.create_stream("agents/x/1")
        woke: asyncio.Queue[str] = asyncio.Queue()
        sb.streams.subscribe("agents/x/1", lambda p: woke.put_nowait("stream:" + p))
        sb.submissions.subscribe(lambda i: woke.put_nowait("queue:" + i))
        own: list[str] = []
        sa.streams.subscribe("agents/x/1", own.append)
        async with asyncio.timeout(5):
            await b.listening()
            await a.listening()

        await sa.streams.append_events("agents/x/1", [{"type": "turn_start"}])
        assert await asyncio.wait_for(woke.get(), 5) == "stream:agents/x/1"
        async def wakes(n: int) -> set[str]:
            return {await asyncio.wait_for(woke.get(), 5) for _ in range(n)}

        both = {"queue:agents/x/1", "stream:agents/x/1"}
        sub, _ = await sa.submissions.admit("agents/x/1", "hello")
        assert await wakes(2) == both  # queued, and submission_admitted is on the stream
        await sa.submissions.admit("agents/x/1", "again")
        assert await wakes(2) == both
        await sa.submissions.claim_next("a-coord")
        await sa.submissions.settle(sub.submission_id, "a-coord", status="completed")
        assert await wakes(2) == both  # "again" became the head, and submission_settled is on the stream
        await sa.streams.close_stream("agents/x/1")
        assert await asyncio.wait_for(woke.get(), 5) == "stream:agents/x/1"
        # the writing replica hears its own writes once (directly), not again via NOTIFY
        await asyncio.sleep(0.2)
        assert own == ["agents/x/1"] * 5 and woke.empty()
    finally:
        await a.close()
        await b.close()


async def test_newer_schema_refuses_a_fresh_adapter(schema) -> None:
    url, name = schema
    first = PostgresAdapter(url, schema=name)
    await first.migrate()
    await first.close()
    await admin(url, f'UPDATE "{name}".flue_meta SET value = %s', ("2",))
    second = PostgresAdapter(url, schema=name)
    try:
        with pytest.raises(SchemaVersionError) as info:
            await second.migrate()
        message = str(info.value)
        assert f"PostgreSQL schema '{name}' at 127.0.0.1:5432/test" in message
        assert "newer Flue (schema 2, this Flue knows 1)" in message
        with pytest.raises(SchemaVersionError):
            await second.connect()
    finally:
        await second.close()


async def test_connect_to_unmigrated_schema_says_so(schema) -> None:
    url, name = schema
    adapter = PostgresAdapter(url, schema=name)
    try:
        with pytest.raises(SchemaVersionError, match="migrate"):
            await adapter.connect()
    finally:
        await adapter.close()


async def test_state_is_shared_across_adapters(schema) -> None:
    url, name = schema
    writer = PostgresAdapter(url, schema=name)
    await writer.migrate()
    ws = await writer.connect()
    await ws.streams.create_stream("runs/r")
    await ws.streams.append_events("runs/r", [{"type": "run_start"}])
    await ws.snapshots.save_snapshot("agents/a/1", b"\x00fs")
    await writer.close()
    reader = PostgresAdapter(url, schema=name)
    try:
        await reader.migrate()
        rs = await reader.connect()
        assert (await rs.streams.read_events("runs/r")).events == [{"type": "run_start"}]
        assert await rs.snapshots.load_snapshot("agents/a/1") == b"\x00fs"
    finally:
        await reader.close()


def test_plugin_options(tmp_path: Path, monkeypatch) -> None:
    cfg = PersistenceConfig(kind="postgres", url="postgresql://u@h/db", schema="flue", pool_size=2)
    adapter = flue_persistence(config=cfg, root=tmp_path)
    assert isinstance(adapter, PostgresAdapter) and adapter.schema == "flue"
    assert flue_persistence(config=PersistenceConfig(kind="sqlite"), root=tmp_path) is None
    monkeypatch.setenv("MY_DB", "postgresql://env@h/db")
    assert flue_persistence(config=PersistenceConfig(kind="postgres", url_env="MY_DB"), root=tmp_path).url.startswith(
        "postgresql://env@")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(ValueError, match="DATABASE_URL is not set"):
        flue_persistence(config=PersistenceConfig(kind="postgres"), root=tmp_path)
    with pytest.raises(ValueError, match="hots"):
        flue_persistence(config=PersistenceConfig(kind="postgres", url="x", hots="y"), root=tmp_path)
    with pytest.raises(ValueError, match="only one of url, dsn"):
        flue_persistence(config=PersistenceConfig(kind="postgres", url="x", dsn="y"), root=tmp_path)
    with pytest.raises(ValueError, match="schema"):
        flue_persistence(config=PersistenceConfig(kind="postgres", url="x", schema="bad-name;"), root=tmp_path)


async def test_selected_through_flue_yaml_and_the_entry_point(schema, write_tree, monkeypatch) -> None:
    url, name = schema
    monkeypatch.setenv("FLUE_PG_TEST_URL", url)
    root = write_tree({"flue.yaml": f"persistence:\n  kind: postgres\n  url_env: FLUE_PG_TEST_URL\n  schema: {name}\n"})
    project = load_project(root)
    assert any(p.name == "postgres" and p.source == "entrypoint" for p in project.plugins)
    adapter, stores = await open_persistence(project)
    try:
        assert isinstance(adapter, PostgresAdapter)
        sub, created = await stores.submissions.admit("agents/a/1", "hello")
        assert created and (await stores.submissions.get(sub.submission_id)).input == "hello"
    finally:
        await adapter.close()


async def test_admissions_racing_settlements_keep_the_order(schema) -> None:
    """A head settled while the next admission commits must not lose that admission
    (the head pointer is advanced from a snapshot taken after the instance lock)."""
    url, name = schema
    a, b = PostgresAdapter(url, schema=name, pool_size=4), PostgresAdapter(url, schema=name, pool_size=4)
    try:
        await a.migrate()
        sa, sb = await a.connect(), await b.connect()
        first, _ = await sa.submissions.admit("agents/r/1", 0)
        claimed_order = []
        current = await sa.submissions.claim_next("c")
        for n in range(1, 40):
            # settle the running head on one replica while the next prompt is admitted on the other
            await asyncio.gather(
                sa.submissions.settle(current.submission_id, "c", status="completed"),
                sb.submissions.admit("agents/r/1", n),
            )
            claimed_order.append(current.input)
            async with asyncio.timeout(5):
                while (current := await sa.submissions.claim_next("c")) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        assert claimed_order == list(range(39))
        assert current.input == 39
    finally:
        await a.close()
        await b.close()
