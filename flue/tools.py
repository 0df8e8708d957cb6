"""Tools: what a model may call.

A tool is a name, a description, a JSON Schema for its parameters and an async
``execute(args, ctx)`` returning a string for the model. Arguments are validated
against the schema before ``execute`` runs; a validation error or a raised
exception becomes an error tool result the model can correct.

Python authors use the :func:`tool` decorator, which derives the schema from
type hints through pydantic::

    @flue.tool
    async def search_kb(query: str, limit: int = 5) -> str:
        "Search the knowledge base."
        ...

Plugins register tools by name through the ``flue_tools`` hook; agent files
list them under ``tools:``. Names must not collide with built-in tool names
(:data:`BUILTIN_TOOL_NAMES`). :func:`create_tools` turns a list of functions,
Flue-style ``{name, description, parameters, execute}`` mappings and tools
into checked :class:`Tool` objects.

A running tool gets a :class:`ToolContext`; ``ctx.signal`` fires when its
operation is aborted (``handle.abort()`` or the call's ``signal=``). The
harness also cancels the tool's task then, so most tools need nothing; a tool
that hands work to a thread, a subprocess or a remote job checks
``ctx.signal.aborted`` or awaits ``ctx.signal.wait()`` to stop it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flue.harness.abort import AbortSignal
    from flue.instance import InstanceInfo
    from flue.sandbox.base import SandboxEnv

# Names reserved for the built-in tools (see flue/builtin_tools).
BUILTIN_TOOL_NAMES: tuple[str, ...] = ("bash", "read", "write", "edit", "grep", "glob", "task")
TOOL_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


class ToolError(Exception):
    """Raise inside ``execute`` to return a clean error message to the model."""


@dataclass
class ToolContext:
    """What a running tool may use: the sandbox, the cwd, ids, and cancellation."""

    env: SandboxEnv | None = None
    cwd: str = "/workspace"
    tool_call_id: str = ""
    session: Any = None  # the calling Session (for task delegation)
    state: dict[str, Any] = field(default_factory=dict)  # per-session tool state (e.g. files read)
    signal: AbortSignal | None = None  # fires when the operation is aborted

    @property
    def instance(self) -> InstanceInfo | None:
        """The agent instance the tool runs for: ``id`` and the parsed ``conversation`` key
        (bind a reply tool to it; see flue.instance). None outside a harness."""
        return getattr(getattr(self.session, "harness", None), "instance", None)


Execute = Callable[[dict[str, Any], ToolContext], Awaitable[str]]


@dataclass
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    execute: Execute
    validator: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # returns cleaned args or raises
    _schema_validator: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= TOOL_NAME_CHARS or len(self.name) > 64:
            raise ValueError(f"tool name {self.name!r} must be 1-64 characters of letters, digits, '_' or '-'")
        if self.parameters.get("type") != "object":
            raise ValueError(f"tool {self.name!r}: parameters must be a JSON Schema with type 'object'")

    def spec(self) -> dict[str, Any]:
        """The OpenAI-style function spec sent to the model."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate(self, args: Any) -> dict[str, Any]:
        """Validate model-supplied arguments; raise ``ToolError`` listing every problem."""
        if not isinstance(args, dict):
            raise ToolError(f"arguments must be a JSON object, got {type(args).__name__}")
        if self.validator is not None:
            return self.validator(args)
        import jsonschema

        validator = self._schema_validator
        if validator is None or validator.schema is not self.parameters:  # built once per tool (and schema)
            validator = self._schema_validator = jsonschema.Draft202012Validator(self.parameters)
        errors = sorted(validator.iter_errors(args), key=lambda e: list(e.path))
        if errors:
            lines = [f"- {'/'.join(str(p) for p in e.path) or '<root>'}: {e.message}" for e in errors]
            raise ToolError("invalid arguments:\n" + "\n".join(lines))
        return args


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None, description: str | None = None):
    """Make a Tool from an async (or sync) function, deriving its schema from type hints.

    The function may accept a parameter annotated ``ToolContext`` (any name) to
    receive the tool context; it is excluded from the schema.
    """

    def wrap(f: Callable[..., Any]) -> Tool:
        from pydantic import ValidationError, create_model

        sig = inspect.signature(f)
        hints = _hints(f)
        ctx_param = None
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            ann = hints.get(pname, Any)
            if ann is ToolContext:
                ctx_param = pname
                continue
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (ann, default)
        model = create_model(f"{f.__name__}_args", **fields)
        schema = model.model_json_schema()
        schema.pop("title", None)
        for prop in schema.get("properties", {}).values():
            prop.pop("title", None)

        def validator(args: dict[str, Any]) -> dict[str, Any]:
            try:
                return dict(model.model_validate(args))
            except ValidationError as exc:
                lines = [f"- {'/'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
                raise ToolError("invalid arguments:\n" + "\n".join(lines)) from None

        async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
            kwargs = dict(args)
            if ctx_param:
                kwargs[ctx_param] = ctx
            out = f(**kwargs)
            if inspect.isawaitable(out):
                out = await out
            return out if isinstance(out, str) else json.dumps(out, default=str)

        doc = inspect.getdoc(f) or ""
        return Tool(
            name=name or f.__name__,
            description=description or doc or f.__name__,
            parameters=schema,
            execute=execute,
            validator=validator,
        )

    return wrap(fn) if fn is not None else wrap


def _hints(f: Callable[..., Any]) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(f)
    except Exception:
        return {}


def create_tools(defs: list[Any]) -> list[Tool]:
    """Checked tools from :class:`Tool` objects, plain functions (as :func:`tool` makes them)
    and mappings ``{name, description, parameters, execute}`` (``execute(args)`` or
    ``execute(args, ctx)``, sync or async, returning a string or JSON-able value).

    Raises ``ValueError`` on a name that is a built-in tool's or used twice."""
    out: list[Tool] = []
    seen: set[str] = set()
    for index, item in enumerate(defs):
        if isinstance(item, Tool):
            made = item
        elif isinstance(item, dict):
            made = _from_mapping(item, index)
        elif callable(item):
            made = tool(item)
        else:
            raise TypeError(f"create_tools(): item {index} is a {type(item).__name__}, not a tool, function or mapping")
        if made.name in BUILTIN_TOOL_NAMES:
            raise ValueError(f"tool name '{made.name}' is a built-in tool's ({', '.join(BUILTIN_TOOL_NAMES)}): rename it")
        if made.name in seen:
            raise ValueError(f"tool name '{made.name}' is used twice")
        seen.add(made.name)
        out.append(made)
    return out


def _from_mapping(item: dict[str, Any], index: int) -> Tool:
    missing = [k for k in ("name", "description", "parameters", "execute") if not item.get(k)]
    if missing:
        raise ValueError(f"create_tools(): item {index} needs a non-empty {', '.join(missing)}")
    unknown = set(item) - {"name", "description", "parameters", "execute"}
    if unknown:
        raise ValueError(f"create_tools(): item {index} has unknown keys {', '.join(sorted(unknown))}")
    fn = item["execute"]
    if not callable(fn):
        raise TypeError(f"create_tools(): the execute of '{item['name']}' must be a function")
    takes_ctx = len(inspect.signature(fn).parameters) >= 2

    async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
        out = fn(args, ctx) if takes_ctx else fn(args)
        if inspect.isawaitable(out):
            out = await out
        return out if isinstance(out, str) else json.dumps(out, default=str)

    return Tool(name=item["name"], description=item["description"], parameters=dict(item["parameters"]), execute=execute)
