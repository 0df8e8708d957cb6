"""A stateless echo script: a model that answers from the request alone.

``echo_turn(body)`` looks at the conversation of one chat request:

- the last user message contains ``TOOL:<name>`` (optionally ``ARGS:<json object>``)
  and no tool result came after it: one call of that tool;
- a tool result came after it: ``tool <name> done: <the result's first 80 characters>``;
- otherwise: ``echo: <the last user text>``.

Because it decides from the request alone it is safe under any concurrency,
which makes it the model of the benchmarks and of the official-client tests
(the TypeScript Flue's side-by-side mock answers the same way)::

    server.add(*[echo_turn] * 100)      # ScriptedModelServer: 100 calls of it
"""

from __future__ import annotations

import json
import re
from typing import Any

from flue.testing.scripted import ScriptedToolCall, ScriptedTurn

TOOL_RE = re.compile(r"TOOL:([A-Za-z0-9_.\-]+)")
ARGS_RE = re.compile(r"ARGS:(\{.*\})", re.S)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def echo_turn(body: dict[str, Any]) -> ScriptedTurn:
    messages = body.get("messages") or []
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    user_text = _text(messages[last_user].get("content")) if last_user >= 0 else ""
    results = [m for m in messages[last_user + 1:] if m.get("role") == "tool"]
    wanted = TOOL_RE.search(user_text)
    if wanted and not results:
        found = ARGS_RE.search(user_text)
        try:
            args = json.loads(found.group(1)) if found else {}
        except json.JSONDecodeError:
            args = {}
        return ScriptedTurn(tool_calls=[ScriptedToolCall(name=wanted.group(1), arguments=args)])
    if wanted and results:
        return ScriptedTurn(text=f"tool {wanted.group(1)} done: {_text(results[-1].get('content'))[:80].strip()}")
    return ScriptedTurn(text=f"echo: {user_text[:200]}")
