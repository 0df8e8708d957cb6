"""The built-in ``offline`` provider: a rule-based model that needs no key and no network.

``offline/<anything>`` (e.g. ``offline/rules``) answers the latest user message
from rules in ``flue.yaml``, so a new project (``flue init``) and the examples
run before any provider is set up. It is a built-in plugin
(``flue.plugins.BUILTIN_PLUGINS``) registered through the ordinary hooks:
``flue_model_providers`` gives the provider, ``flue_configure`` reads its
options::

    model: ${FLUE_MODEL:-offline/rules}
    plugins:
      offline:
        fallback: "What to say when no rule matches."
        rules:
          - when: "greeting for (?P<name>[^.\\n]+)"   # a regular expression (re.search)
            reply: "Hello, {name}!"                  # {group} names are filled from the match
          - when: "(?i)invoice|billing"
            result: {topic: billing}                 # answers a call that asks for a result

A rule with ``reply`` answers prompts; one with ``result`` answers calls that
ask for a structured result (through the ``final_result`` tool). The first
matching rule wins. Replace the model with a real one (``model:`` in
``flue.yaml`` or an agent, or ``FLUE_MODEL``) when you have a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

from flue.hookspecs import hookimpl

#: ``plugins: {offline: {...}}`` in flue.yaml
OPTIONS_KEY = "offline"
FALLBACK = (
    "(offline model) I answer from the rules under 'plugins: offline:' in flue.yaml. For real answers set "
    "'model: anthropic/claude-sonnet-4-6' there (and ANTHROPIC_API_KEY in .env), or FLUE_MODEL in the shell."
)

_options: dict[str, Any] = {}


@hookimpl
def flue_configure(config: Any) -> None:
    _options.clear()
    _options.update(config.plugin_options(OPTIONS_KEY))


@hookimpl
def flue_model_providers() -> dict[str, Any]:
    return {"offline": OfflineModel(_options.get("rules") or [], _options.get("fallback") or FALLBACK)}


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


class OfflineModel:
    """A :class:`flue.models.base.ModelProvider` that streams rule-based answers."""

    def __init__(self, rules: list[dict[str, Any]], fallback: str = FALLBACK):
        self.rules = [{**rule, "pattern": re.compile(str(rule.get("when", "")), re.S)} for rule in rules]
        self.fallback = fallback

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        from flue.events import Usage
        from flue.models.base import ModelChunk, ToolCallDelta

        text = _last_user_text(request.messages)
        wants_result = any(t.get("function", {}).get("name") == "final_result" for t in request.tools)
        already_answered = request.messages and request.messages[-1].get("role") == "tool"
        reply, result = self.fallback, None
        for rule in self.rules:
            match = rule["pattern"].search(text)
            if match and (("result" in rule) == wants_result):
                groups = {k: v.strip() for k, v in match.groupdict().items() if v}
                reply = str(rule.get("reply", "")).format(**groups)
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
