"""Structured results through the final_result tool: validation, retries, JSON Schema from YAML."""

from __future__ import annotations

import pytest
import yaml
from pydantic import BaseModel, Field

import flue
from flue.harness.errors import ResultValidationError
from flue.harness.results import InvalidResultSchemaError
from flue.testing import ScriptedModel, calls, reply, tool_call


class Ticket(BaseModel):
    title: str
    priority: int = Field(ge=1, le=5)


async def _session(model: ScriptedModel):
    return await (await flue.init(flue.create_agent(name="triage", model=model, tools=[]))).session()


async def test_pydantic_result_is_validated_and_returned():
    model = ScriptedModel([calls(tool_call("final_result", {"title": "Login broken", "priority": "2"}))])
    session = await _session(model)

    result = await session.prompt("File a ticket for the login bug.", result=Ticket)

    assert result.data == Ticket(title="Login broken", priority=2)
    assert isinstance(result.data, Ticket)
    request = model.requests[0]
    spec = next(t for t in request.tools if t["function"]["name"] == "final_result")
    assert spec["function"]["parameters"]["properties"]["priority"]["maximum"] == 5
    assert "call the `final_result` tool" in request.messages[0]["content"]
    # The accepted call is answered, so the history stays a valid conversation.
    assert session.messages[-1] == {"role": "tool", "tool_call_id": "call_1_0", "content": "Result accepted."}


async def test_invalid_results_are_explained_then_corrected():
    model = ScriptedModel([
        calls(tool_call("final_result", {"title": "Crash", "priority": 9})),
        reply("I think it is urgent."),  # forgot the tool: also a failed attempt, with a reminder
        calls(tool_call("final_result", {"title": "Crash", "priority": 5})),
    ])
    session = await _session(model)

    result = await session.prompt("Ticket for the crash.", result=Ticket, result_retries=3)

    assert result.data == Ticket(title="Crash", priority=5)
    assert result.turns == 3
    error = model.requests[1].messages[-1]
    assert error["role"] == "tool" and error["content"].startswith("Error: the result does not match the schema")
    assert "priority: Input should be less than or equal to 5" in error["content"]
    reminder = model.requests[2].messages[-1]
    assert reminder["role"] == "user" and "without calling `final_result`" in reminder["content"]


async def test_a_model_that_keeps_returning_invalid_data_gets_a_typed_error():
    model = ScriptedModel([calls(tool_call("final_result", {"title": 42})) for _ in range(5)])
    session = await _session(model)

    with pytest.raises(ResultValidationError) as info:
        await session.prompt("Ticket please.", result=Ticket)

    assert info.value.attempts == 3  # the default bound
    assert len(model.requests) == 3
    assert "title: Input should be a valid string" in info.value.last_error
    assert "priority: Field required" in str(info.value)
    assert session.messages == []


async def test_json_schema_result_from_yaml_with_a_non_object_top_level():
    schema = yaml.safe_load("""
type: array
items: {type: string}
minItems: 2
""")
    model = ScriptedModel([
        calls(tool_call("final_result", {"result": ["only one"]})),
        calls(tool_call("final_result", {"result": ["red", "green"]})),
    ])
    session = await _session(model)

    result = await session.prompt("Two colours?", result=schema)

    assert result.data == ["red", "green"]
    params = model.requests[0].tools[0]["function"]["parameters"]
    assert params == {"type": "object", "properties": {"result": schema}, "required": ["result"]}
    assert "result: ['only one'] is too short" in model.requests[1].messages[-1]["content"]


async def test_a_broken_schema_is_rejected_before_any_model_call():
    model = ScriptedModel([reply("unused")])
    session = await _session(model)
    with pytest.raises(InvalidResultSchemaError, match="not a valid JSON Schema"):
        await session.prompt("x", result={"type": "no-such-type"})
    assert model.requests == []
