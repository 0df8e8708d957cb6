"""``task``: delegate a focused job to a subagent in a detached session.

Calls ``ctx.session.task(prompt, agent=..., cwd=...)`` (the harness's
``Session.task``): the child shares the sandbox, has its own history, and its
final text comes back as the tool result, cut to :data:`TASK_MAX_CHARS`
characters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flue.builtin_tools._common import keep_head
from flue.tools import Tool, ToolContext, ToolError

TASK_MAX_CHARS = 30_000

_BASE = """Delegate a self-contained job to a subagent, which works in a fresh conversation with the same sandbox and files and returns its final answer as text.

- Write `prompt` as a complete brief: the subagent sees nothing of this conversation.
- Use it for research or exploration that would otherwise fill your context, or for independent pieces of work.
- `cwd` optionally sets the subagent's working directory (relative paths resolve against yours).
- The answer is cut to {max:,} characters."""


def _parameters(subagents: Mapping[str, str | None] | None) -> dict[str, Any]:
    agent: dict[str, Any] = {"type": "string", "description": "Subagent profile name; omit for a general-purpose copy of yourself"}
    if subagents:
        agent["enum"] = sorted(subagents)
    return {
        "type": "object",
        "properties": {
            "prompt": {"type": "string", "minLength": 1, "description": "The complete task for the subagent"},
            "agent": agent,
            "cwd": {"type": "string", "description": "Working directory for the subagent"},
        },
        "required": ["prompt"],
        "additionalProperties": False,
    }


def _description(subagents: Mapping[str, str | None] | None) -> str:
    text = _BASE.format(max=TASK_MAX_CHARS)
    if subagents:
        listed = "\n".join(f"- {name}: {desc or '(no description)'}" for name, desc in sorted(subagents.items()))
        text += "\n\nAvailable subagents (`agent`):\n" + listed
    return text


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    session = ctx.session
    if session is None or not hasattr(session, "task"):
        raise ToolError("task delegation is not available here (no calling session)")
    kwargs: dict[str, Any] = {}
    if args.get("agent"):
        kwargs["agent"] = args["agent"]
    if args.get("cwd"):
        from flue.sandbox.paths import resolve

        kwargs["cwd"] = resolve(ctx.cwd or "/", args["cwd"])
    result = await session.task(args["prompt"], **kwargs)
    text = getattr(result, "text", result)
    if not isinstance(text, str):
        text = json.dumps(text, default=str)
    return keep_head(text, TASK_MAX_CHARS) or "(the subagent returned no text)"


def make(subagents: Mapping[str, str | None] | None = None) -> Tool:
    return Tool(name="task", description=_description(subagents), parameters=_parameters(subagents), execute=execute)
