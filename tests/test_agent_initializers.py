"""Agent initializers (Flue's createAgent(({ id }) => ...)): agents/<name>.py with init_agent(ctx)
over HTTP at two instance ids, create_agent(fn) in a workflow, and what they may return;
define_agent_profile, create_tools and BUILTIN_TOOL_NAMES as public names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from fixtures.server.support import scratch_project, served

import flue
from flue.harness.errors import AgentResolutionError
from flue.project import load_project
from flue.testing import ScriptedModel, calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer

TENANT_AGENT = textwrap.dedent(
    '''
    """Knows which instance it serves."""

    import flue

    http = True
    durability = {"max_attempts": 3}


    def init_agent(ctx):
        @flue.tool
        async def whoami() -> str:
            "Which instance is this?"
            return f"instance {ctx.id}"

        return {"instructions": f"You serve {ctx.id}.", "tools": [whoami]}
    '''
)

CREATED_WORKFLOW = textwrap.dedent(
    '''
    import flue

    http = True

    helper = flue.create_agent(
        lambda ctx: {"instructions": f"run {ctx.id} for {ctx.payload['who']}", "tools": []}, name="helper",
    )


    async def run(ctx):
        harness = await ctx.init(helper)
        reply = await (await harness.session()).prompt("hello")
        return {"text": reply.text, "harness_id": harness.id}
    '''
)


def whoami_then_answer(body: dict) -> object:
    last = body["messages"][-1]
    if last["role"] == "tool":
        return reply(last["content"])
    return calls(tool_call("whoami", {}))


async def test_a_python_agent_binds_its_tool_to_the_instance_id_over_http(tmp_path: Path) -> None:
    async with ScriptedModelServer([whoami_then_answer] * 6 + [reply("done")]) as model:
        root = scratch_project(tmp_path, model.url, {
            "agents/tenant.py": TENANT_AGENT, "workflows/created.py": CREATED_WORKFLOW,
        })
        project = load_project(root)
        tenant = project.agents["tenant"]
        assert tenant.exposed and tenant.description == "Knows which instance it serves."
        assert tenant.durability is not None and tenant.durability.max_attempts == 3
        async with served(root) as srv:
            answers = {}
            for instance in ("t1", "t2", "t1"):
                resp = await srv.client.post(f"/agents/tenant/{instance}?wait=result", json={"message": "who are you?"})
                assert resp.status == 200, await resp.text()
                answers.setdefault(instance, []).append((await resp.json())["result"]["text"])
            assert answers == {"t1": ["instance t1", "instance t1"], "t2": ["instance t2"]}

            resp = await srv.client.post("/workflows/created?wait=result", json={"who": "Ada"})
            assert resp.status == 200, await resp.text()
            body = await resp.json()
            assert body["result"] == {"text": "done", "harness_id": body["runId"]}  # ctx.id is the run id

        systems = [m["content"] for r in model.records for m in r.body["messages"] if m["role"] == "system"]
        assert any(s.startswith("You serve t1.") for s in systems) and any(s.startswith("You serve t2.") for s in systems)
        assert systems[-1].startswith(f"run {body['runId']} for Ada")  # and ctx.payload is the workflow's


async def test_what_an_initializer_may_return():
    ok = flue.create_agent(lambda ctx: flue.Agent(model=ScriptedModel([reply("hi")]), tools=[]), name="fine")
    harness = await flue.init(ok, id="u-7")
    assert harness.id == "u-7" and harness.scope == "agents/fine/u-7" and harness.agent.name == "fine"

    async def async_init(ctx: flue.AgentContext) -> dict:
        return {"model": False, "tools": [], "instructions": f"for {ctx.id}"}

    assert (await flue.init(flue.create_agent(async_init, name="later"))).agent.instructions == "for local"
    for returned, problem in [
        ({"name": "other"}, "its file name"), ({"durability": {}}, "module level"),
        ({"tool": []}, "unknown field 'tool'"), (["not", "a", "dict"], "must return a dict"),
    ]:
        with pytest.raises(AgentResolutionError, match=problem):
            await flue.init(flue.create_agent(lambda ctx, r=returned: r, name="bad"))
    with pytest.raises(TypeError, match="only name= and description="):
        flue.create_agent(lambda ctx: {}, model=False)


def test_python_agent_module_diagnostics(tmp_path: Path) -> None:
    files = {
        "agents/noinit.py": "x = 1\n",
        "agents/dyn.py": "import os\nhttp = os.environ.get('X') == '1'\ndef init_agent(ctx):\n    return {}\n",
        "agents/coded.py": "def init_agent(ctx):\n    return {}\n",
        "agents/uses.md": "---\nprofile: coded\nsubagents: [slow]\n---\nHi.\n",
        "agents/slow.md": "---\ndurability: {max_attempts: 2}\n---\nSlow.\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    project = load_project(tmp_path)
    found = {(d.file, d.code, d.severity) for d in project.diagnostics}
    assert ("agents/noinit.py", "agent.missing-initializer", "error") in found
    assert ("agents/dyn.py", "agent.not-literal", "error") in found
    assert ("agents/uses.md", "agent.module-not-profile", "error") in found
    assert ("agents/slow.md", "agent.subagent-durability", "warning") in found
    assert "coded" in project.agents


def test_profiles_and_tools_as_public_names():
    researcher = flue.define_agent_profile(name="researcher", instructions="Look it up.", tools=[])
    agent = flue.create_agent(name="lead", model=False, subagents=[researcher])
    assert agent.subagents == [researcher]
    with pytest.raises(ValueError, match="declares durability"):
        flue.create_agent(name="lead", subagents=[flue.define_agent_profile(name="slow", durability={"max_attempts": 2})])
    with pytest.raises(ValueError, match="must start with a letter"):
        flue.define_agent_profile(name="9lives")
    with pytest.raises(ValueError, match="listed twice"):
        flue.define_agent_profile(subagents=[researcher, researcher])

    assert flue.BUILTIN_TOOL_NAMES[:6] == ("bash", "read", "write", "edit", "grep", "glob")

    def lookup(city: str) -> str:
        "Look a city up."
        return city.upper()

    tools = flue.create_tools([
        lookup,
        {"name": "kb", "description": "Search the knowledge base.",
         "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
         "execute": lambda args: {"hits": [args["q"]]}},
    ])
    assert [t.name for t in tools] == ["lookup", "kb"]
    with pytest.raises(ValueError, match="built-in"):
        flue.create_tools([{"name": "bash", "description": "x", "parameters": {"type": "object"}, "execute": print}])
    with pytest.raises(ValueError, match="used twice"):
        flue.create_tools([lookup, lookup])


async def test_create_tools_mapping_tools_run():
    (kb,) = flue.create_tools([{
        "name": "kb", "description": "Search.", "parameters": {"type": "object", "properties": {}},
        "execute": lambda args, ctx: {"call": ctx.tool_call_id},
    }])
    assert await kb.execute({}, flue.ToolContext(tool_call_id="c1")) == '{"call": "c1"}'
