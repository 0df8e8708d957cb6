"""Model metadata: context window, output limit, prices, reasoning support.

The data is litellm's bundled catalog file
(``litellm/model_prices_and_context_window_backup.json``), read as JSON
**without importing litellm** (its import costs seconds), so a server whose
models all use native clients never imports it. The file is parsed once per
process, on first use (~20 ms); servers warm it at startup.

A provider registration may override what the catalog says (``flue.yaml``)::

    providers:
      gateway:
        api: openai-completions
        base_url: https://gateway.example.com/v1
        context_window: 128000              # every model of the provider
        cost: {input: 0.15, output: 0.6}    # USD per million tokens
        models:
          big-model: {context_window: 1000000, cost: {input: 2, output: 8, cache_read: 0.5}}

Precedence per field: the registration's ``models.<id>`` entry, then the
registration's own value, then the catalog. Unknown models have no window (so
threshold compaction is off) and cost 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from flue.usage import ModelPrices

CATALOG_FILE = "model_prices_and_context_window_backup.json"

# Our provider ids whose catalog prefix differs (litellm's provider names).
CATALOG_ALIASES: dict[str, str] = {
    "google": "gemini",
    "together": "together_ai",
    "fireworks": "fireworks_ai",
    "vertex": "vertex_ai",
    "azure-openai": "azure",
}


# litellm's flags for reasoning-effort values a model accepts beyond low/medium/high.
_EFFORT_FLAGS = {
    "none": "supports_none_reasoning_effort",
    "minimal": "supports_minimal_reasoning_effort",
    "xhigh": "supports_xhigh_reasoning_effort",
    "max": "supports_max_reasoning_effort",
}


class ModelInfo(BaseModel):
    context_window: int | None = None
    max_tokens: int | None = None
    cost: ModelPrices = Field(default_factory=ModelPrices)
    reasoning: bool = False
    vision: bool = False
    # which of none/minimal/xhigh/max the model accepts as a reasoning effort (absent: unknown)
    efforts: dict[str, bool] = Field(default_factory=dict)
    # Anthropic: thinking {type: adaptive} with an effort, rather than a token budget
    adaptive_thinking: bool = False
    # Anthropic: the model thinks unless told not to (and "always": it cannot be turned off)
    thinking_default: Literal["off", "on", "always"] = "off"


def catalog_path() -> Path | None:
    """Where litellm's bundled catalog lies (found without importing litellm)."""
    override = os.environ.get("FLUE_MODEL_CATALOG")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / CATALOG_FILE
        if path.is_file():
            return path
    return None


@cache
def _entries() -> dict[str, dict[str, Any]]:
    path = catalog_path()
    if path is None:
        return {}
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and k != "sample_spec"}


def warm() -> None:
    """Parse the catalog now (servers call this in a thread at startup)."""
    _entries()


def catalog_entry(provider_id: str, model: str) -> dict[str, Any] | None:
    entries = _entries()
    prefix = CATALOG_ALIASES.get(provider_id, provider_id)
    entry = entries.get(f"{prefix}/{model}")
    if entry is not None:
        return entry
    entry = entries.get(model)  # openai and anthropic models are listed bare
    if entry is not None and entry.get("litellm_provider") in (prefix, provider_id):
        return entry
    return None


def _per_million(entry: dict[str, Any], key: str) -> float:
    value = entry.get(key)
    return float(value) * 1e6 if isinstance(value, int | float) else 0.0


def catalog_info(provider_id: str, model: str) -> ModelInfo | None:
    entry = catalog_entry(provider_id, model)
    if entry is None:
        return None
    window = entry.get("max_input_tokens") or entry.get("max_tokens")
    out = entry.get("max_output_tokens")
    return ModelInfo(
        context_window=int(window) if isinstance(window, int | float) and window > 0 else None,
        max_tokens=int(out) if isinstance(out, int | float) and out > 0 else None,
        cost=ModelPrices(
            input=_per_million(entry, "input_cost_per_token"),
            output=_per_million(entry, "output_cost_per_token"),
            cache_read=_per_million(entry, "cache_read_input_token_cost"),
            cache_write=_per_million(entry, "cache_creation_input_token_cost"),
        ),
        reasoning=bool(entry.get("supports_reasoning")),
        vision=bool(entry.get("supports_vision")),
        efforts={level: bool(entry[flag]) for level, flag in _EFFORT_FLAGS.items() if flag in entry},
        adaptive_thinking=bool(entry.get("supports_adaptive_thinking")),
        thinking_default=(
            "always" if entry.get("thinking_always_on") else "on" if entry.get("thinking_on_by_default") else "off"
        ),
    )


def model_info(provider_id: str, model: str, registration: Any = None) -> ModelInfo:
    """What is known about ``provider_id/model``: catalog data under the registration's overrides.

    ``registration`` is a :class:`flue.config.ProviderConfig` (or anything with the
    same optional attributes: ``context_window``, ``max_tokens``, ``cost``, ``models``).
    """
    info = catalog_info(provider_id, model) or ModelInfo()
    if registration is None:
        return info
    update: dict[str, Any] = {}
    per_model = (getattr(registration, "models", None) or {}).get(model)
    for source in (registration, per_model):
        if source is None:
            continue
        for key in ("context_window", "max_tokens", "cost", "reasoning"):
            value = getattr(source, key, None)
            if value is not None:
                update[key] = value
    return info.model_copy(update=update) if update else info


def known_providers(registered: list[str]) -> set[str]:
    """Provider ids that mean something without a registration: Flue's native endpoints, the
    catalog's aliases and litellm's providers (from its catalog file), plus the registered ones."""
    from flue.models.endpoints import ENDPOINTS

    litellm_ids = {str(e.get("litellm_provider")) for e in _entries().values() if e.get("litellm_provider")}
    return set(ENDPOINTS) | set(CATALOG_ALIASES) | litellm_ids | set(registered)
