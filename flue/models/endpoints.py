"""The catalog providers Flue calls with its own clients: wire protocol, base URL, key.

This table is the one place that says which unregistered provider ids skip
litellm. ``openai`` speaks the Responses API (as Flue's pi-ai does),
``anthropic`` the Messages API, and the rest OpenAI's Chat Completions at
their known base URL. Every other catalog id (bedrock, vertex, gemini, azure,
cohere, ...) goes through litellm. A ``providers:`` entry may still change a
listed provider's ``base_url``, ``api``, key or headers, or send it through
litellm with ``via: litellm``.

``key_env`` lists the environment variables that may hold the API key, first
set wins (the first is the one error messages name). Local servers (ollama,
vllm, lmstudio) need no key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Endpoint:
    api: str
    base_url: str
    key_env: tuple[str, ...] = ()
    key_optional: bool = False
    # Chat Completions quirks
    max_tokens_field: str = "max_tokens"  # OpenAI itself wants max_completion_tokens
    reasoning_effort: bool = True  # whether the endpoint takes reasoning_effort
    prompt_cache_key: bool = False  # whether to send prompt_cache_key (OpenAI's cache routing)


OPENAI = Endpoint(
    "openai-responses", "https://api.openai.com/v1", ("OPENAI_API_KEY",),
    max_tokens_field="max_completion_tokens", prompt_cache_key=True,
)
ANTHROPIC = Endpoint("anthropic-messages", "https://api.anthropic.com", ("ANTHROPIC_API_KEY",))


def _chat(base_url: str, *key_env: str, **quirks: object) -> Endpoint:
    return Endpoint("openai-completions", base_url, key_env, **quirks)  # type: ignore[arg-type]


ENDPOINTS: dict[str, Endpoint] = {
    "openai": OPENAI,
    "anthropic": ANTHROPIC,
    "openrouter": _chat("https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "groq": _chat("https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    # deepseek-reasoner always reasons and takes no effort; mistral and grok reject the parameter
    "deepseek": _chat("https://api.deepseek.com/v1", "DEEPSEEK_API_KEY", reasoning_effort=False),
    "together": _chat("https://api.together.xyz/v1", "TOGETHER_API_KEY", "TOGETHERAI_API_KEY"),
    "mistral": _chat("https://api.mistral.ai/v1", "MISTRAL_API_KEY", reasoning_effort=False),
    "xai": _chat("https://api.x.ai/v1", "XAI_API_KEY", reasoning_effort=False),
    "fireworks": _chat("https://api.fireworks.ai/inference/v1", "FIREWORKS_API_KEY", "FIREWORKS_AI_API_KEY"),
    "cerebras": _chat("https://api.cerebras.ai/v1", "CEREBRAS_API_KEY"),
    "deepinfra": _chat("https://api.deepinfra.com/v1/openai", "DEEPINFRA_API_KEY"),
    "perplexity": _chat("https://api.perplexity.ai", "PERPLEXITY_API_KEY", "PERPLEXITYAI_API_KEY",
                        reasoning_effort=False),
    "ollama": _chat("http://127.0.0.1:11434/v1", "OLLAMA_API_KEY", key_optional=True),
    "vllm": _chat("http://127.0.0.1:8000/v1", "VLLM_API_KEY", key_optional=True),
    "lmstudio": _chat("http://127.0.0.1:1234/v1", "LMSTUDIO_API_KEY", key_optional=True),
}

# What a registration with ``api:`` and an id not listed above gets: its own base_url, no key
# unless it names one, and the quirks of a generic OpenAI-compatible server.
GENERIC = {
    "openai-completions": Endpoint("openai-completions", "", key_optional=True),
    "openai-responses": Endpoint("openai-responses", "", key_optional=True),
    "anthropic-messages": Endpoint("anthropic-messages", "", key_optional=True),
}


def find_api_key(endpoint: Endpoint, registration: Any, environ: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(key, None)``, or ``(None, env var)`` when a key is needed and that variable is unset.

    A registration's ``api_key_env`` (which must be set) or ``api_key`` wins; then the
    endpoint's variables. A server of its own (``key_optional``, a registration's own
    ``base_url``) may need no key. ``registration`` is a :class:`flue.config.ProviderConfig`."""
    reg = registration
    if reg is not None and reg.api_key_env:
        value = environ.get(reg.api_key_env)
        return (value, None) if value else (None, reg.api_key_env)
    if reg is not None and reg.api_key:
        return reg.api_key, None
    for name in endpoint.key_env:
        if environ.get(name):
            return environ[name], None
    own_url = reg is not None and bool(reg.base_url) and reg.base_url.rstrip("/") != endpoint.base_url.rstrip("/")
    if endpoint.key_optional or own_url or not endpoint.key_env:
        return None, None  # a self-hosted server or a gateway with its own auth
    return None, endpoint.key_env[0]
