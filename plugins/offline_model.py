"""The example project's offline model: answers from rules, so the examples run
on a machine with no model provider. Set ``FLUE_MODEL`` (and that provider's
API key) to use a real model instead; see flue.yaml.

It is also a small, complete example of a project plugin: it registers a model
provider (``offline``) through the ``flue_model_providers`` hook and reads its
rules from ``plugins: {offline_model: {rules: [...]}}`` in flue.yaml through
``flue_configure``. A rule matches the latest user message with a regular
expression (``when``) and either replies with ``reply`` (``{group}`` names are
filled from the match) or, when the request asks for a structured result,
returns ``result`` through the ``final_result`` tool.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from flue import hookimpl
from flue.events import Usage
from flue.models.base import ModelChunk, ModelRequest, ToolCallDelta

_rules: list[dict[str, Any]] = []
_fallback = "I am the offline stand-in model of the Flue examples. Set FLUE_MODEL to use a real one."


@hookimpl
def flue_configure(config: Any) -> None:
    global _fallback
    options = config.plugin_options("offline_model")
    _rules[:] = [{**rule, "pattern": re.compile(rule["when"], re.S)} for rule in options.get("rules", [])]
    _fallback = options.get("fallback", _fallback)


@hookimpl
def flue_model_providers() -> dict[str, Any]:
    return {"offline": OfflineModel()}


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class OfflineModel:
    """A ``flue.models.base.ModelProvider`` that streams rule-based answers."""

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        text = _last_user_text(request.messages)
        wants_result = any(t.get("function", {}).get("name") == "final_result" for t in request.tools)
        already_answered = request.messages and request.messages[-1].get("role") == "tool"
        reply, result = _fallback, None
        for rule in _rules:
            match = rule["pattern"].search(text)
            if match and (("result" in rule) == wants_result):
                groups = {k: v.strip() for k, v in match.groupdict().items() if v}
                reply = rule.get("reply", "").format(**groups)
                result = rule.get("result")
                break
        if wants_result and result is not None and not already_answered:
            args = json.dumps(result)
            yield ModelChunk(tool_calls=[ToolCallDelta(index=0, id="offline_result", name="final_result", arguments=args)])
            yield ModelChunk(finish_reason="tool_calls", usage=Usage.of(input=len(text) // 4, output=len(args) // 4))
            return
        for start in range(0, len(reply), 12):
            yield ModelChunk(text=reply[start : start + 12])
        yield ModelChunk(finish_reason="stop", usage=Usage.of(input=len(text) // 4, output=len(reply) // 4))
