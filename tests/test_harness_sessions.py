"""Sessions, persistence through the SessionStore protocol, models, agents and profiles."""

from __future__ import annotations

import pytest
from fixtures.harness.support import make_project

import flue
from flue.agent import resolve_agent
from flue.authoring.agents import AgentDefinition
from flue.harness.errors import (
    AgentResolutionError,
    InvalidThinkingLevelError,
    ModelNotConfiguredError,
    SessionExistsError,
    SessionNotFoundError,
    UnknownSubagentError,
)
from flue.harness.store import MemorySessionStore
from flue.persistence.base import SessionStore
from flue.testing import ScriptedModel, reply


async def test_sessions_get_create_delete_and_get_or_create():
    model = ScriptedModel([reply("one"), reply("two")])
    harness = await flue.init(flue.create_agent(name="s", model=model, tools=[]))
    assert harness.name == "default"

    with pytest.raises(SessionNotFoundError, match="does not exist"):
        await harness.sessions.get("notes")
    notes = await harness.sessions.create("notes")
    with pytest.raises(SessionExistsError):
        await harness.sessions.create("notes")
    assert await harness.sessions.get("notes") is notes
    assert await harness.session("notes") is notes
    other = await harness.session()
    assert other.name == "default" and other is not notes

    await notes.prompt("first")
    await other.prompt("second")
    # Each session has its own history.
    assert [m["content"] for m in notes.messages] == ["first", "one"]
    assert [m["content"] for m in other.messages] == ["second", "two"]

    await harness.sessions.delete("notes")
    with pytest.raises(SessionNotFoundError):
        await harness.sessions.get("notes")
    await harness.sessions.delete("never-existed")  # a no-op


async def test_history_is_persisted_and_continued_by_a_new_harness():
    store = MemorySessionStore()
    assert isinstance(store, SessionStore)
    model = ScriptedModel([reply("Nice to meet you, Ada."), reply("Your name is Ada.")])
    agent = flue.create_agent(name="memo", model=model, tools=[])

    first = await flue.init(agent, session_store=store, scope="agents/memo/customer-1")
    await (await first.session("chat")).prompt("I am Ada.")
    assert store.keys() == ["agents/memo/customer-1/default/chat"]
    saved = await store.load("agents/memo/customer-1/default/chat")
    assert saved.messages == [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
    ]
    assert saved.metadata["usage"]["totalTokens"] > 0

    second = await flue.init(agent, session_store=store, scope="agents/memo/customer-1")
    session = await second.sessions.get("chat")
    await session.prompt("What is my name?")
    assert model.requests[1].messages[1:] == [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]
    # Another scope does not see it.
    third = await flue.init(agent, session_store=store, scope="agents/memo/customer-2")
    with pytest.raises(SessionNotFoundError):
        await third.sessions.get("chat")


async def test_missing_model_is_a_typed_error_saying_what_to_set(tmp_path):
    project = make_project(tmp_path)
    manual = await flue.init("manual", project=project)
    session = await manual.session()
    with pytest.raises(ModelNotConfiguredError, match=r"model: false.*pass model="):
        await session.prompt("hi")
    model = ScriptedModel([reply("ok")])
    result = await session.prompt("hi", model=model)
    assert result.text == "ok"

    bare = await flue.init(flue.create_agent(name="bare"))
    with pytest.raises(ModelNotConfiguredError, match="flue.yaml"):
        await (await bare.session()).prompt("hi")


async def test_flue_yaml_default_model_and_call_site_model_strings(tmp_path):
    project = make_project(tmp_path, config={"model": "scripted/default-model"})
    model = ScriptedModel([reply("from default"), reply("from call site")])
    harness = await flue.init(AgentDefinition(name="plain"), project=project, providers={"scripted": model})
    session = await harness.session()
    await session.prompt("a")
    await session.prompt("b", model="scripted/other-model")
    assert [r.model for r in model.requests] == ["default-model", "other-model"]


def test_profile_chain_merges_with_agent_keys_winning(tmp_path):
    project = make_project(tmp_path)
    researcher = resolve_agent("researcher", project)
    assert researcher.model == "scripted/profile-model"  # from the profile
    assert researcher.thinking == "high"  # from the profile
    assert researcher.tools == []  # the agent's own list replaces the profile's
    assert researcher.description.startswith("Looks things up")
    assert researcher.instructions == (
        "House style: plain words, no jargon.\n\nYou research one question and answer in one sentence."
    )

    base = flue.create_agent(name="base", model="scripted/a", instructions="Base.", files={"a.txt": "1"}, cwd="/srv")
    child = flue.create_agent(name="child", profile=base, instructions="Child.", files={"b.txt": "2"})
    merged = resolve_agent(child)
    assert (merged.name, merged.model, merged.cwd) == ("child", "scripted/a", "/srv")
    assert merged.files == {"a.txt": "1", "b.txt": "2"}
    assert merged.instructions == "Base.\n\nChild."

    loop_a = flue.create_agent(name="a", profile="b")
    with pytest.raises(AgentResolutionError, match="no project"):
        resolve_agent(loop_a)


async def test_unknown_subagent_is_a_typed_error(tmp_path):
    project = make_project(tmp_path)
    model = ScriptedModel([])
    session = await (await flue.init("assistant", project=project, providers={"scripted": model})).session()
    with pytest.raises(UnknownSubagentError, match="available: researcher"):
        await session.task("x", agent="writer")
    assert model.requests == []


async def test_init_by_name_from_the_current_directory_with_images(tmp_path, monkeypatch):
    project = make_project(tmp_path)
    monkeypatch.chdir(project.root)
    model = ScriptedModel([reply("A red square.")])
    harness = await flue.init("assistant", providers={"scripted": model})
    assert harness.project is not None and harness.project.root == project.root
    session = await harness.session()

    await session.prompt(
        "What is this?",
        images=[{"type": "image", "data": "iVBORw0KGgo=", "mimeType": "image/png"}, {"url": "https://x.test/a.jpg"}],
    )

    assert model.requests[0].messages[-1] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}},
        ],
    }
    with pytest.raises(InvalidThinkingLevelError, match="not one of off"):
        await session.prompt("x", thinking="extreme")
    with pytest.raises(AgentResolutionError, match="unknown agent 'ghost'"):
        await flue.init("ghost")
