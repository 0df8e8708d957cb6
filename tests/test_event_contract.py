"""Parts of the wire contract that no single route shows: streams grow linearly, usage is
priced from the model's catalog prices, and ``flue.observe`` sees every event (flue-reference.md
7.1-7.3 and 11.5)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from fixtures.server.support import served, write_files

import flue
from flue.config import ProviderConfig
from flue.models.catalog import catalog_path
from flue.testing import ScriptedModel, ScriptedTurn, event_types, reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

ECHO_PLUGIN = '''
from flue import hookimpl
from flue.testing import ScriptedModel
from flue.testing.echo import echo_turn

MODEL = ScriptedModel([echo_turn] * 1000, name="echo")


@hookimpl
def flue_model_providers():
    return {"echo": MODEL}
'''


async def test_an_agent_stream_grows_linearly_with_its_conversation(tmp_path: Path) -> None:
    """200 prompts to one instance: the model's input grows with the history, but the stream
    does not (``turn_request`` is never persisted), so the last 20 prompts add no more bytes
    per prompt than the first 20, within 25%."""
    root = write_files(tmp_path, {
        "flue.yaml": "model: echo/model\n",
        "plugins/echo_model.py": ECHO_PLUGIN,
        "agents/chat.md": "---\ndescription: chats\nhttp: true\ntools: []\ncompaction: false\n---\nBe brief.\n",
    })
    async with served(root) as srv:
        for n in range(200):
            resp = await srv.client.post("/agents/chat/long?wait=result", json={"message": f"message number {n:03d}"})
            assert resp.status == 200, await resp.text()
        events = (await srv.runtime.stores.streams.read_events("agents/chat/long", limit=100_000)).events
    per_prompt: dict[str, int] = {}
    order: list[str] = []
    for event in events:
        sid = event["submissionId"]
        if sid not in per_prompt:
            order.append(sid)
        per_prompt[sid] = per_prompt.get(sid, 0) + len(json.dumps(event))
    assert len(order) == 200
    assert "turn_request" not in {e["type"] for e in events}
    first = sum(per_prompt[s] for s in order[:20]) / 20
    last = sum(per_prompt[s] for s in order[-20:]) / 20
    assert last <= first * 1.25, (first, last)
    # while the model really was sent the whole, growing conversation
    model = srv.runtime.project.pm.get_plugin("echo_model").MODEL
    assert len(model.requests[-1].messages) > 300


async def test_usage_is_priced_from_the_catalog(scripted_model_server: ScriptedModelServer) -> None:
    """A model whose prices are in litellm's bundled catalog reports cost = price x tokens,
    per token kind (cached prompt tokens are counted apart and priced as cache reads)."""
    catalog = json.loads(catalog_path().read_text())["gpt-4o-mini"]
    scripted_model_server.add(ScriptedTurn(text="priced", prompt_tokens=1000, completion_tokens=500, cached_tokens=200))
    gateway = ProviderConfig(base_url=scripted_model_server.url, api_key="test-key")  # the catalog provider, moved
    harness = await flue.init(flue.create_agent(name="priced", model="openai/gpt-4o-mini", tools=[]),
                              providers={"openai": gateway})
    result = await (await harness.session()).prompt("hello")
    usage = result.usage
    assert (usage.input, usage.cache_read, usage.output, usage.total_tokens) == (800, 200, 500, 1500)
    assert usage.cost.input == pytest.approx(800 * catalog["input_cost_per_token"])
    assert usage.cost.output == pytest.approx(500 * catalog["output_cost_per_token"])
    assert usage.cost.cache_read == pytest.approx(200 * catalog["cache_read_input_token_cost"])
    assert usage.cost.total == pytest.approx(usage.cost.input + usage.cost.output + usage.cost.cache_read)
    assert usage.cost.total > 0
    assert result.model.provider == "openai" and result.model.id == "gpt-4o-mini"


def test_usage_sums_prices_and_wire_form_match_the_validated_models() -> None:
    """Sums and prices are built unvalidated and the wire form is spelled out by hand (hot path):
    each must equal what the validated model and pydantic's dump give."""
    from flue.usage import Cost, ModelPrices, Usage

    a, b = Usage.of(input=3, output=4, cache_read=5, cache_write=6), Usage.of(input=1, output=2)
    total = ModelPrices(input=2.0, output=8.0, cache_read=0.5, cache_write=1.0).price(a + b)
    expected = Usage(input=4, output=6, cache_read=5, cache_write=6, total_tokens=21,
                     cost=Cost(input=8e-6, output=48e-6, cache_read=2.5e-6, cache_write=6e-6, total=64.5e-6))
    for field in ("input", "output", "cache_read", "cache_write", "total_tokens"):
        assert getattr(total, field) == getattr(expected, field)
    for field in ("input", "output", "cache_read", "cache_write", "total"):
        assert getattr(total.cost, field) == pytest.approx(getattr(expected.cost, field))
    for usage in (total, a + b, Usage(), a):
        assert usage.wire() == usage.model_dump(by_alias=True)
        assert json.loads(json.dumps(usage.wire())) == json.loads(usage.model_dump_json(by_alias=True))


async def test_a_registration_prices_its_models_and_unknown_models_cost_nothing() -> None:
    model = ScriptedModel([ScriptedTurn(text="a", prompt_tokens=1_000_000, completion_tokens=2_000_000),
                           reply("b")])
    priced = await flue.init(flue.create_agent(name="p", model="house/big", tools=[]), providers={"house": model})
    free = await (await priced.session()).prompt("x")
    assert free.usage.cost.total == 0  # a plugin object without prices: unknown, so 0
    config = ProviderConfig(api="openai-completions", base_url="http://unused.invalid/v1",
                            cost={"input": 1.0, "output": 4.0}, models={"big": {"cost": {"input": 2.0, "output": 8.0}}})
    from flue.models.catalog import model_info

    assert model_info("house", "big", config).cost.input == 2.0  # per model beats per provider
    assert model_info("house", "small", config).cost.output == 4.0
    unknown = model_info("house", "small", None)
    assert (unknown.cost.input, unknown.cost.output, unknown.context_window) == (0.0, 0.0, None)


async def test_observe_sees_every_event_until_unsubscribed() -> None:
    seen: list[tuple[str, dict]] = []
    later: list[str] = []

    def broken(event, context):
        raise RuntimeError("observer bug")

    stop_broken = flue.observe(broken)
    stop = flue.observe(lambda event, context: seen.append((event.type, context)))
    stop_later = flue.observe(lambda event, context: later.append(event.type))
    try:
        model = ScriptedModel([reply("one"), reply("two")])
        session = await (await flue.init(flue.create_agent(name="o", model=model, tools=[]))).session("s")
        await session.prompt("first")
        stop()
        await session.prompt("second")
    finally:
        stop_broken()
        stop_later()
    types = [t for t, _ in seen]
    # everything of the first prompt, turn_request included (observers get it; streams never do)
    assert event_types([{"type": t} for t in types]) == [
        "operation_start", "agent_start", "message_start", "message_end", "turn_start", "turn_request",
        "message_start", "text_delta", "message_end", "turn_messages", "turn", "agent_end", "operation", "idle",
    ]
    assert {c["session"] for _, c in seen} == {"s"} and all("operation_id" in c for _, c in seen)
    # unsubscribed: nothing of the second prompt; the failing observer did not stop the third one
    assert later.count("operation_start") == 2


def test_the_event_docs_list_every_event_type() -> None:
    """The vocabulary is documented where users read it (docs/events.md and flue/events.py)."""
    from typing import get_args

    from flue.events import Event

    union = get_args(Event)[0]
    types = sorted(model.model_fields["type"].default for model in get_args(union))
    page = (Path(__file__).resolve().parent.parent / "docs" / "events.md").read_text()
    missing = [t for t in types if f"`{t}`" not in page]
    assert not missing, missing
    assert textwrap.dedent(flue.events.__doc__ or "").count("turn_request") >= 1
