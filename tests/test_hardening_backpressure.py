"""Issue 17: admission past the bounds answers 429 (instance) / 503 (server) with Retry-After,
and every admitted submission still settles exactly once.

A real ``flue start`` with small bounds (``coordinator: {max_queued_per_instance: 3,
max_queued: 6}``) and a slow scripted model, so the backlog stays put during the bursts.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from fixtures.durability import scripted_project, started

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess


async def post(http: aiohttp.ClientSession, url: str, message: str) -> tuple[int, dict[str, Any], dict[str, str]]:
    async with http.post(url, json={"message": message}) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def settled_ids(http: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    """Follow an instance's stream (long-poll) until it holds ``count`` settlements; return their ids."""
    offset, events = "-1", []
    async with asyncio.timeout(60):
        while sum(e["type"] == "submission_settled" for e in events) < count:
            async with http.get(url, params={"offset": offset, "live": "long-poll"}) as resp:
                if resp.status == 200:
                    events += await resp.json()
                offset = resp.headers["Stream-Next-Offset"]
    async with http.get(url, params={"offset": "-1"}) as resp:  # the whole stream, once more
        events = await resp.json()
    assert [e["submissionId"] for e in events if e["type"] == "submission_admitted"] == [
        e["submissionId"] for e in events if e["type"] == "submission_settled"]
    return [e["submissionId"] for e in events if e["type"] == "submission_settled"]


@pytest.mark.slow
async def test_past_the_bounds_admission_is_refused_and_admitted_work_settles_once(tmp_path: Path) -> None:
    slow = reply("done slowly", chunk_size=1, delay=0.15)  # ~1.7 s per prompt
    async with ScriptedModelServer([slow] * 50) as model:
        project = scripted_project(
            tmp_path / "proj", model.url, persistence="{kind: sqlite, path: data/state.db}",
            coordinator="{poll: 0.1, concurrency: 2, max_queued_per_instance: 3, max_queued: 6}",
            files={"agents/echo.md": "---\ndescription: echoes\nhttp: true\ntools: []\n---\nEcho.\n"},
        )
        server = FlueServerProcess(project)
        async with started(server), aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            # one instance, 12 at once: 3 admitted, the rest 429 with Retry-After
            burst = await asyncio.gather(*(post(http, f"{server.url}/agents/echo/a", f"a{n}") for n in range(12)))
            statuses = Counter(status for status, _, _ in burst)
            assert statuses == {202: 3, 429: 9}, statuses
            for status, body, headers in burst:
                if status == 429:
                    assert body["error"]["type"] == "queue_full" and headers["Retry-After"] == "1"
                    assert "max_queued_per_instance" in body["error"]["message"]
            admitted = {"a": [body["submissionId"] for status, body, _ in burst if status == 202]}

            # other instances, one by one: 3 more fit in the server's backlog of 6, then 503
            answers = []
            for n in range(6):
                answers.append(await post(http, f"{server.url}/agents/echo/b{n}", f"b{n}"))
            assert [status for status, _, _ in answers] == [202, 202, 202, 503, 503, 503]
            for _status, body, headers in answers[3:]:
                assert body["error"]["type"] == "overloaded" and headers["Retry-After"] == "2"
            for n, (_status, body, _) in enumerate(answers[:3]):
                admitted[f"b{n}"] = [body["submissionId"]]

            # every admitted submission settles once, in order; the refused ones left no trace
            for instance, ids in admitted.items():
                assert await settled_ids(http, f"{server.url}/agents/echo/{instance}", len(ids)) == ids
            for n in range(3, 6):
                async with http.get(f"{server.url}/agents/echo/b{n}") as resp:
                    assert resp.status == 404  # never admitted: no stream
            # room again once the work is done
            status, _, _ = await post(http, f"{server.url}/agents/echo/a", "again")
            assert status == 202
        assert len(model.requests) >= 6
        assert "Traceback" not in server.output()
