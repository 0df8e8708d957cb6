"""``flue start --workers N``: processes sharing the port and the store, each prompt settled once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

import httpx
from fixtures.server.support import flue_cli, flue_server, scratch_project

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

PROMPTS = 24


async def test_workers_share_the_port_and_settle_every_prompt_once(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    db = tmp_path / "state" / "flue.db"
    root = scratch_project(tmp_path / "proj", scripted_model_server.url,
                           config=f"persistence: {{kind: sqlite, path: {db}}}\n")
    scripted_model_server.add(*[reply("done") for _ in range(PROMPTS)])
    async with flue_server("start", "--host", "127.0.0.1", "--workers", "2", "--grace", "5", cwd=root,
                           timeout=60) as srv:
        await srv.wait_for_line(r"flue start: serving .* with 2 workers$", timeout=60)
        workers = {m for m in srv.lines if "worker " in m and " serving " in m}
        assert len(workers) == 2, srv.output

        async def prompt(i: int) -> httpx.Response:
            # a fresh connection per prompt, so the kernel spreads them over the workers
            async with httpx.AsyncClient(timeout=60) as own:
                return await own.post(f"{srv.url}/agents/assistant/w{i % 8}?wait=result", json={"message": f"m{i}"})

        answers = await asyncio.gather(*(prompt(i) for i in range(PROMPTS)))
        assert [a.status_code for a in answers] == [200] * PROMPTS, [a.text for a in answers if a.status_code != 200]
        assert all(a.json()["result"]["text"] == "done" for a in answers)
        assert len({a.json()["submissionId"] for a in answers}) == PROMPTS
        srv.signal(signal.SIGTERM)
        assert await srv.wait(timeout=30) == 0, srv.output
    # exactly once: one model call per prompt, every submission completed by one attempt
    assert len(scripted_model_server.records) == PROMPTS
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT status, attempts FROM flue_submissions").fetchall()
    assert sorted(rows) == [("completed", 1)] * PROMPTS


async def test_workers_refuse_in_memory_persistence(tmp_path: Path) -> None:
    root = scratch_project(tmp_path, "http://127.0.0.1:9")
    code, _out, err = await flue_cli("start", "--workers", "2", "--port", "0", cwd=root, timeout=60)
    assert code == 1
    assert "--workers needs persistence the worker processes share" in err and "in-memory SQLite" in err
