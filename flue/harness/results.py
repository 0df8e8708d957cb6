"""Structured results: ``result=`` on prompt/skill/task.

Mechanism: a dedicated **result tool**, ``final_result``, is added to the
model's tools for the operation, with the result schema as its parameters.
The system prompt tells the model to finish by calling it. This works with
every provider that supports tool calls (no reliance on provider-specific
JSON modes), and a bad result is an ordinary tool error the model can read
and correct:

- the arguments of ``final_result`` are validated (pydantic for Python types,
  ``jsonschema`` for a JSON Schema mapping, e.g. one written in YAML);
- valid: the operation ends and ``OperationResult.data`` holds the value (a
  model instance for a pydantic model, plain JSON for a JSON Schema);
- invalid: the model gets an error tool result listing every problem and
  tries again; ending a turn *without* calling ``final_result`` also counts
  as a failed attempt and earns a reminder;
- after ``retries`` failed attempts (default 3):
  :class:`~flue.harness.errors.ResultValidationError`.

A schema whose top level is not an object (``list[str]``, ``{"type": "array"}``)
is wrapped as ``{"result": <schema>}`` because tool parameters must be objects;
the wrapper is removed from the returned data.
"""

from __future__ import annotations

from typing import Any

from flue.harness.errors import FlueHarnessError

RESULT_TOOL_NAME = "final_result"
DEFAULT_RESULT_RETRIES = 3

RESULT_INSTRUCTIONS = (
    "This request needs a structured result. When you have finished the work, call the "
    f"`{RESULT_TOOL_NAME}` tool exactly once with the result as its arguments, following its schema. "
    f"If `{RESULT_TOOL_NAME}` reports a problem, call it again with a corrected result."
)
REMINDER = (
    f"You ended your turn without calling `{RESULT_TOOL_NAME}`. Call the `{RESULT_TOOL_NAME}` tool now "
    "with the result, following its schema."
)


class InvalidResultSchemaError(FlueHarnessError):
    pass


class ResultInvalid(Exception):
    """The model's result did not validate; the message lists the problems."""


class ResultSpec:
    def __init__(self, result: Any, *, retries: int = DEFAULT_RESULT_RETRIES):
        self.retries = max(1, retries)
        self._adapter: Any = None
        self._validator: Any = None
        if isinstance(result, dict):
            import jsonschema

            try:
                jsonschema.Draft202012Validator.check_schema(result)
            except jsonschema.SchemaError as exc:
                raise InvalidResultSchemaError(f"result= is not a valid JSON Schema: {exc.message}") from None
            self._validator = jsonschema.Draft202012Validator(result)
            schema = dict(result)
        else:
            from pydantic import TypeAdapter

            try:
                self._adapter = TypeAdapter(result)
                schema = self._adapter.json_schema()
            except Exception as exc:
                raise InvalidResultSchemaError(
                    f"result= must be a pydantic model, a type pydantic understands, or a JSON Schema dict: {exc}"
                ) from None
        self.wrapped = schema.get("type") != "object"
        if self.wrapped:
            defs = {k: schema.pop(k) for k in ("$defs", "definitions") if k in schema}
            schema = {"type": "object", "properties": {"result": schema}, "required": ["result"], **defs}
        self.parameters = schema

    def tool_spec(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": RESULT_TOOL_NAME,
                "description": "Submit the final structured result of this request. Call it once, when done.",
                "parameters": self.parameters,
            },
        }

    def validate(self, args: Any) -> Any:
        """Return the validated value or raise :class:`ResultInvalid`."""
        if not isinstance(args, dict):
            raise ResultInvalid(f"the arguments must be a JSON object, got {type(args).__name__}")
        if self.wrapped:
            if "result" not in args:
                raise ResultInvalid("- result: Field required")
            value = args["result"]
        else:
            value = args
        # Paths are reported as the model wrote them, i.e. under "result" when wrapped.
        prefix = ["result"] if self.wrapped else []
        if self._validator is not None:
            errors = sorted(self._validator.iter_errors(value), key=lambda e: list(e.path))
            if errors:
                raise ResultInvalid("\n".join(f"- {_path(prefix + list(e.path))}: {e.message}" for e in errors))
            return value
        from pydantic import ValidationError

        try:
            return self._adapter.validate_python(value)
        except ValidationError as exc:
            raise ResultInvalid("\n".join(f"- {_path(prefix + list(e['loc']))}: {e['msg']}" for e in exc.errors())) from None


def _path(parts: list[Any]) -> str:
    return "/".join(str(p) for p in parts) or "<root>"


def result_spec(result: Any, retries: int | None = None) -> ResultSpec | None:
    if result is None:
        return None
    return ResultSpec(result, retries=retries if retries is not None else DEFAULT_RESULT_RETRIES)


def jsonable(value: Any) -> Any:
    """A result value as plain JSON (for events and persistence)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    try:
        from pydantic_core import to_jsonable_python

        return to_jsonable_python(value)
    except Exception:
        return repr(value)
