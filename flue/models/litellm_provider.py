"""The model provider for catalog ids without a native client: litellm, imported lazily and offline.

:mod:`flue.models.registry` routes here every provider it has no native
client for (bedrock, vertex_ai, gemini, azure, cohere, ...) and registrations
with ``via: litellm``.

``import litellm`` costs about three seconds and, without
``LITELLM_OFFLINE_MODE``, fetches a price map from the internet. So litellm is
imported only on the first model call, after ``LITELLM_OFFLINE_MODE=true`` is
set (unless the environment already says otherwise).

How a registration becomes a litellm call:

- ``api: openai-completions`` -> ``openai/<model>`` with ``api_base=base_url``
  (the URL keeps its ``/v1``);
- ``api: anthropic-messages`` -> ``anthropic/<model>`` with ``api_base`` =
  ``base_url`` without a trailing ``/v1`` (litellm appends ``/v1/messages``);
- no ``api`` (catalog provider, maybe reconfigured) -> ``<provider>/<model>``
  with the registration's ``base_url``/``api_key``/``headers`` if any.

Every call streams with ``stream_options={"include_usage": True}`` so the last
chunk carries token usage. Thinking levels map to ``reasoning_effort`` (litellm
translates it per provider); for Anthropic-format models litellm does not know
as reasoning models, an explicit ``thinking`` budget is sent instead.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

from flue.config import ProviderConfig
from flue.harness.errors import MissingApiKeyError, ModelCallError, ProviderConfigError, UnknownProviderError
from flue.models.base import ModelChunk, ModelRequest, ToolCallDelta
from flue.usage import Usage

# Anthropic thinking budgets (tokens) for models litellm cannot map itself.
ANTHROPIC_THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 16384, "xhigh": 32768}
# Keys of our history messages that are not part of the OpenAI wire format.
_LOCAL_MESSAGE_KEYS = ("reasoning_content", "thinking_blocks", "reasoning_items")


def import_litellm() -> Any:
    """Import litellm with offline mode on (no price-map or tokenizer downloads)."""
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    # Never print "Give Feedback / Get Help" banners into a user's terminal.
    litellm.suppress_debug_info = True
    return litellm


async def load_litellm() -> Any:
    """``import_litellm`` without blocking the event loop: the first import takes seconds,
    which would stall every other task of a server (lease renewals, stream reads)."""
    module = sys.modules.get("litellm")
    if module is not None and getattr(module, "suppress_debug_info", False):
        return module
    return await asyncio.to_thread(import_litellm)


class LiteLLMProvider:
    """Calls one provider id through litellm, using its registration if any."""

    def __init__(self, provider_id: str, config: ProviderConfig | None = None, *, registered: list[str] | None = None):
        self.provider_id = provider_id
        self.config = config
        self._registered = registered or []

    @property
    def api(self) -> str:
        """The registration's wire protocol, else ``litellm`` (litellm picks the provider's own)."""
        return self.config.api if self.config is not None and self.config.api else "litellm"

    # -- request shaping (pure; tested without a network) -------------------------

    def call_kwargs(self, request: ModelRequest, litellm: Any) -> dict[str, Any]:
        cfg = self.config
        api = cfg.api if cfg is not None else None
        if api is None and self.provider_id not in litellm.provider_list:
            from flue.diagnostics import did_you_mean
            from flue.models.catalog import known_providers

            close = did_you_mean(self.provider_id, known_providers(self._registered), cutoff=0.8)
            raise UnknownProviderError(self.provider_id, self._registered, close=close)
        if api == "openai-completions":
            target = "openai"
        elif api == "anthropic-messages":
            target = "anthropic"
        else:
            target = self.provider_id
        if api is not None and not (cfg and cfg.base_url) and self.provider_id not in litellm.provider_list:
            raise ProviderConfigError(
                f"provider '{self.provider_id}' (api: {api}) needs 'base_url:' in its registration"
            )
        kwargs: dict[str, Any] = {
            "model": f"{target}/{request.model}",
            "messages": _wire_messages(request.messages, keep_thinking_blocks=target == "anthropic"),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            kwargs["tools"] = request.tools
        if request.max_tokens is not None:
            kwargs["max_tokens"] = request.max_tokens
        if cfg is not None:
            if cfg.base_url:
                base = cfg.base_url.rstrip("/")
                if target == "anthropic" and base.endswith("/v1"):
                    base = base[: -len("/v1")]  # litellm adds /v1/messages itself
                kwargs["api_base"] = base
            if cfg.api_key_env and not os.environ.get(cfg.api_key_env):
                raise MissingApiKeyError(self.provider_id, cfg.api_key_env, model=request.spec)
            key = cfg.resolved_api_key()
            if key:
                kwargs["api_key"] = key
            elif api is not None and cfg.base_url:
                # Self-hosted OpenAI/Anthropic-compatible servers often need no key, but the
                # SDKs refuse to build a client without one.
                kwargs["api_key"] = "not-needed"
            if cfg.headers:
                kwargs["extra_headers"] = dict(cfg.headers)
        kwargs.update(self._thinking_kwargs(request, target, litellm))
        return kwargs

    def _thinking_kwargs(self, request: ModelRequest, target: str, litellm: Any) -> dict[str, Any]:
        level = request.thinking
        if level is None or level == "off":
            return {}
        if target == "anthropic" and not _supports_reasoning(litellm, request.model):
            budget = ANTHROPIC_THINKING_BUDGETS[level]
            out: dict[str, Any] = {
                "thinking": {"type": "enabled", "budget_tokens": budget},
                "allowed_openai_params": ["thinking"],
            }
            if request.max_tokens is None or request.max_tokens <= budget:
                out["max_tokens"] = budget + 8192  # Anthropic requires max_tokens > budget
            return out
        return {"reasoning_effort": level}

    # -- the call -------------------------------------------------------------------

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelChunk]:
        litellm = await load_litellm()
        kwargs = self.call_kwargs(request, litellm)
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            raise self._error(request, kwargs, exc) from exc
        blocks: list[dict[str, Any]] = []
        try:
            async for chunk in response:
                out = _convert_chunk(chunk, blocks)
                if out is not None:
                    yield out
            if blocks:
                # Signed thinking blocks must go back to Anthropic whole with the assistant message.
                yield ModelChunk(extra={"thinking_blocks": blocks})
        except Exception as exc:
            raise self._error(request, kwargs, exc) from exc
        finally:
            # Runs on normal end, on errors and on cancellation: releases the HTTP stream.
            close = getattr(response, "aclose", None)
            if close is not None:
                await close()


    def _error(self, request: ModelRequest, kwargs: dict[str, Any], exc: Exception) -> ModelCallError:
        """litellm's exception as our typed error; its text (which quotes the provider's
        answer) goes to the log only."""
        from flue.models.http import CallTarget, connection_error, log, status_error

        if isinstance(exc, ModelCallError):
            return exc
        key = kwargs.get("api_key")
        env = self.config.api_key_env if self.config is not None else None
        target = CallTarget(
            request.spec, self.provider_id, str(kwargs.get("api_base") or f"{self.provider_id}'s API"),
            f"{env} (in the project's .env or the shell)" if env else f"the API key litellm uses for '{self.provider_id}'",
            key if isinstance(key, str) and key != "not-needed" else None,
        )
        text = str(exc)
        if target.secret:
            text = text.replace(target.secret, "***")
        log.warning("model call to %s through litellm failed: %s: %s", request.spec, type(exc).__name__, text[:4096])
        name = type(exc).__name__
        if name in ("APIConnectionError", "Timeout"):
            return connection_error(target, exc, 1)
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status >= 400:
            return status_error(target, status, 1)
        return ModelCallError(request.spec, detail=f"{name} from litellm (the details are in the server log)",
                              provider=self.provider_id)


def _supports_reasoning(litellm: Any, model: str) -> bool:
    try:
        return bool(litellm.supports_reasoning(model=model, custom_llm_provider="anthropic"))
    except Exception:
        return False


def _wire_messages(messages: list[dict[str, Any]], *, keep_thinking_blocks: bool) -> list[dict[str, Any]]:
    out = []
    for msg in messages:
        if any(k in msg for k in _LOCAL_MESSAGE_KEYS):
            msg = {k: v for k, v in msg.items() if k not in _LOCAL_MESSAGE_KEYS or (keep_thinking_blocks and k == "thinking_blocks")}
        out.append(msg)
    return out


def merge_thinking_blocks(blocks: list[dict[str, Any]], deltas: list[Any]) -> None:
    """Fold streamed thinking-block fragments into whole blocks (text joined, signature kept)."""
    for raw in deltas:
        block = raw if isinstance(raw, dict) else dict(raw)
        kind = block.get("type", "thinking")
        if kind != "thinking":  # e.g. redacted_thinking arrives whole
            blocks.append(dict(block))
            continue
        if not blocks or blocks[-1].get("type") != "thinking" or blocks[-1].get("signature"):
            blocks.append({"type": "thinking", "thinking": ""})
        current = blocks[-1]
        current["thinking"] += block.get("thinking") or ""
        if block.get("signature"):
            current["signature"] = block["signature"]


def _convert_chunk(chunk: Any, blocks: list[dict[str, Any]]) -> ModelChunk | None:
    text = thinking = ""
    calls: list[ToolCallDelta] = []
    finish: str | None = None
    for choice in getattr(chunk, "choices", None) or []:
        delta = getattr(choice, "delta", None)
        if delta is not None:
            text += getattr(delta, "content", None) or ""
            thinking += getattr(delta, "reasoning_content", None) or ""
            for tc in getattr(delta, "tool_calls", None) or []:
                fn = getattr(tc, "function", None)
                calls.append(
                    ToolCallDelta(
                        index=getattr(tc, "index", None) or 0,
                        id=getattr(tc, "id", None),
                        name=getattr(fn, "name", None) if fn is not None else None,
                        arguments=(getattr(fn, "arguments", None) or "") if fn is not None else "",
                    )
                )
            merge_thinking_blocks(blocks, getattr(delta, "thinking_blocks", None) or [])
        finish = getattr(choice, "finish_reason", None) or finish
    usage = _convert_usage(getattr(chunk, "usage", None))
    if not (text or thinking or calls or finish or usage):
        return None
    return ModelChunk(text=text, thinking=thinking, tool_calls=calls, usage=usage, finish_reason=finish)


def _convert_usage(usage: Any) -> Usage | None:
    """litellm's OpenAI-shaped usage -> ours: cached prompt tokens are counted apart from ``input``."""
    if usage is None:
        return None
    prompt = getattr(usage, "prompt_tokens", 0) or 0
    completion = getattr(usage, "completion_tokens", 0) or 0
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    cached = (getattr(prompt_details, "cached_tokens", 0) or 0) if prompt_details is not None else 0
    cached = cached or getattr(usage, "cache_read_input_tokens", 0) or 0
    written = getattr(usage, "cache_creation_input_tokens", 0) or 0
    if not (prompt or completion):
        return None
    return Usage.of(input=max(0, prompt - cached - written), output=completion, cache_read=cached, cache_write=written)
