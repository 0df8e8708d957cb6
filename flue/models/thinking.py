"""Flue's thinking levels as each wire protocol's reasoning options.

Levels are ``off | minimal | low | medium | high | xhigh``; no level means
Flue's default, ``medium``. A model that does not reason (per litellm's
catalog, or ``reasoning:`` in its registration) gets no reasoning option at
all, whatever the level.

OpenAI (``reasoning_effort`` / ``reasoning.effort``): the level is the effort,
clamped to what the model accepts. ``off`` is ``none`` where the model has it,
else its lowest effort (o-series and gpt-5 models cannot stop reasoning);
``minimal`` falls back to ``low`` and ``xhigh`` to ``high`` unless the catalog
says the model takes them.

Anthropic: models with adaptive thinking get ``thinking: {type: adaptive}``
and ``output_config.effort`` (minimal and low are ``low``; xhigh is ``xhigh``,
else ``max``, else ``high``). Older models get a token budget
(:data:`ANTHROPIC_BUDGETS`) with ``max_tokens`` raised to fit it. ``off``
sends nothing, or ``{type: disabled}`` to a model that thinks by default.
"""

from __future__ import annotations

from typing import Any

from flue.models.catalog import ModelInfo

DEFAULT_LEVEL = "medium"
ANTHROPIC_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
ANTHROPIC_MIN_OUTPUT = 1024  # tokens left for the answer when a budget is squeezed
ANTHROPIC_DEFAULT_MAX_TOKENS = 8192  # for models the catalog does not know
ANTHROPIC_MAX_TOKENS_CAP = 32000  # Flue asks for at most this much output by default


def openai_effort(level: str | None, info: ModelInfo) -> str | None:
    """The ``reasoning_effort`` to send, or None to send none."""
    if not info.reasoning:
        return None
    level = level or DEFAULT_LEVEL
    efforts = info.efforts
    if level == "off":
        if efforts.get("none"):
            return "none"
        return "minimal" if efforts.get("minimal") else "low"
    if level == "minimal":
        return "minimal" if efforts.get("minimal") else "low"
    if level == "xhigh":
        return "xhigh" if efforts.get("xhigh") else "high"
    return level


def anthropic_max_tokens(requested: int | None, info: ModelInfo) -> int:
    """``max_tokens`` before thinking (Anthropic requires one)."""
    if requested:
        return requested
    if info.max_tokens:
        return min(info.max_tokens, ANTHROPIC_MAX_TOKENS_CAP)
    return ANTHROPIC_DEFAULT_MAX_TOKENS


def anthropic_thinking(level: str | None, info: ModelInfo, max_tokens: int) -> tuple[dict[str, Any], int]:
    """The body fields for thinking (``thinking``, ``output_config``) and the ``max_tokens`` to send."""
    if not info.reasoning:
        return {}, max_tokens
    level = level or DEFAULT_LEVEL
    if level == "off":
        if info.thinking_default == "on":
            return {"thinking": {"type": "disabled"}}, max_tokens
        return {}, max_tokens
    if info.adaptive_thinking:
        if level in ("minimal", "low"):
            effort = "low"
        elif level == "xhigh":
            effort = "xhigh" if info.efforts.get("xhigh") else "max" if info.efforts.get("max") else "high"
        else:
            effort = level
        # without display: summarized, newer models return an empty thinking block
        return {"thinking": {"type": "adaptive", "display": "summarized"}, "output_config": {"effort": effort}}, max_tokens
    budget = ANTHROPIC_BUDGETS[level]
    total = max_tokens + budget
    if info.max_tokens:
        total = min(total, info.max_tokens)
    if total <= budget:
        budget = max(ANTHROPIC_BUDGETS["minimal"], total - ANTHROPIC_MIN_OUTPUT)
    return {"thinking": {"type": "enabled", "budget_tokens": budget}}, total
