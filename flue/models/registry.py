"""Resolving ``provider/model`` strings to a provider object, and which client serves each.

Flue owns the provider registry (litellm's own registry is not extended).
Registrations come from, lowest precedence first:

1. the catalog: an unregistered id such as ``anthropic`` or ``openai``;
2. plugins, through the ``flue_model_providers`` hook (a
   :class:`~flue.config.ProviderConfig` or a
   :class:`~flue.models.base.ModelProvider` object);
3. ``providers:`` in ``flue.yaml``;
4. ``init(..., providers={...})`` and :meth:`ModelRegistry.register` in code.

Routing (:func:`route`):

- a ``ModelProvider`` object handles its calls itself;
- ``via: litellm`` in a registration: litellm;
- ``api:`` in a registration (``openai-completions``, ``openai-responses``,
  ``anthropic-messages``): Flue's native aiohttp client for that protocol, at
  the registration's ``base_url`` (or the known one of a listed id);
- an id listed in :data:`flue.models.endpoints.ENDPOINTS` (openai, anthropic,
  openrouter, groq, deepseek, together, mistral, xai, fireworks, ollama, vllm,
  ...), registered without ``api`` (a reconfiguration: ``base_url``, key,
  headers) or not at all: its native client;
- any other id (bedrock, vertex_ai, gemini, azure, cohere, ...): litellm, as
  ``<id>/<model>`` with the registration's settings if any.

Model metadata (context window, prices, reasoning) comes from
:mod:`flue.models.catalog` whatever the route. Building a registry, resolving
a model and calling a native client never import litellm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from flue.config import ProviderConfig
from flue.harness.errors import InvalidModelError
from flue.models.base import ModelProvider
from flue.models.catalog import ModelInfo, model_info
from flue.models.endpoints import ENDPOINTS, GENERIC, Endpoint

if TYPE_CHECKING:
    from flue.project import Project

Registration = ProviderConfig | ModelProvider


@dataclass
class ResolvedModel:
    provider_id: str
    model: str
    provider: ModelProvider
    registration: ProviderConfig | None = None
    _info: ModelInfo | None = None

    @property
    def spec(self) -> str:
        return f"{self.provider_id}/{self.model}"

    @property
    def api(self) -> str:
        """The wire protocol, as events name it: ``openai-completions``, ``openai-responses`` or
        ``anthropic-messages`` (native clients, and litellm for a registration with ``api:``),
        ``litellm`` for catalog providers litellm serves, a plugin object's own ``api``
        attribute, else ``custom``."""
        own = getattr(self.provider, "api", None)
        return own if isinstance(own, str) else "custom"

    @property
    def info(self) -> ModelInfo:
        """Context window, prices, reasoning: the registration's values over litellm's catalog."""
        if self._info is None:
            lookup = getattr(self.provider, "model_info", None)
            own = lookup(self.model) if callable(lookup) else None
            self._info = own if isinstance(own, ModelInfo) else model_info(self.provider_id, self.model, self.registration)
        return self._info


def split_model(spec: str) -> tuple[str, str]:
    """``"cloudflare/@cf/meta/llama"`` -> ``("cloudflare", "@cf/meta/llama")``."""
    if not isinstance(spec, str):
        raise InvalidModelError(spec)
    provider, sep, model = spec.partition("/")
    if not sep or not provider or not model:
        raise InvalidModelError(spec)
    return provider, model


#: where a loaded project keeps its shared registry (``ModelRegistry.for_project``)
_SHARED = "_flue_model_registry"


class ModelRegistry:
    def __init__(self, registrations: dict[str, Registration] | None = None):
        self._registrations: dict[str, Registration] = {}
        self._providers: dict[str, ModelProvider] = {}
        self._resolved: dict[str, ResolvedModel] = {}
        for provider_id, registration in (registrations or {}).items():
            self.register(provider_id, registration)

    @classmethod
    def for_project(
        cls, project: Project | None, extra: dict[str, Registration] | None = None
    ) -> ModelRegistry:
        """The project's providers (plugins', then flue.yaml's), then ``extra``. Without ``extra``
        the registry is made once per loaded project and shared (its clients, its model info)."""
        shared = project is not None and not extra
        if shared and (cached := project.__dict__.get(_SHARED)) is not None:  # type: ignore[union-attr]
            return cast(ModelRegistry, cached)
        registry = cls()
        if project is not None:
            for provider_id, registration in project.registries.model_providers.values().items():
                registry.register(provider_id, registration)
        if project is not None:
            for provider_id, config in project.config.providers.items():
                registry.register(provider_id, config)
        for provider_id, registration in (extra or {}).items():
            registry.register(provider_id, registration)
        if shared:
            project.__dict__[_SHARED] = registry  # type: ignore[union-attr]
        return registry

    def register(self, provider_id: str, registration: Registration | dict[str, Any]) -> None:
        """Register or replace a provider (a dict is read as a ``ProviderConfig``)."""
        if isinstance(registration, dict):
            registration = ProviderConfig.model_validate(registration)
        if not isinstance(registration, ProviderConfig) and not isinstance(registration, ModelProvider):
            raise TypeError(
                f"provider '{provider_id}': expected a ProviderConfig or an object with stream(request), "
                f"got {type(registration).__name__}"
            )
        self._registrations[provider_id] = registration
        self._providers.pop(provider_id, None)
        self._resolved.clear()

    @property
    def registered(self) -> list[str]:
        return sorted(self._registrations)

    def registration(self, provider_id: str) -> Registration | None:
        return self._registrations.get(provider_id)

    def resolve(self, spec: str) -> ResolvedModel:
        provider_id, model = split_model(spec)
        registration = self._registrations.get(provider_id)
        from flue.models.overrides import override_registration  # configure_provider() of this request

        if (scoped := override_registration(provider_id, registration)) is not None:
            return ResolvedModel(provider_id, model, ModelRegistry({provider_id: scoped}).provider(provider_id), scoped)
        resolved = self._resolved.get(spec)
        if resolved is None:  # kept: its model info is looked up once
            config = registration if isinstance(registration, ProviderConfig) else None
            resolved = self._resolved[spec] = ResolvedModel(provider_id, model, self.provider(provider_id), config)
        return resolved

    def provider(self, provider_id: str) -> ModelProvider:
        cached = self._providers.get(provider_id)
        if cached is not None:
            return cached
        registration = self._registrations.get(provider_id)
        if registration is not None and not isinstance(registration, ProviderConfig):
            provider: ModelProvider = registration
        else:
            endpoint = route(provider_id, registration)
            if endpoint is None:
                from flue.models.litellm_provider import LiteLLMProvider

                # Whether an unregistered id exists in litellm's catalog is checked on
                # the first call, so resolving stays free of the litellm import.
                provider = LiteLLMProvider(provider_id, registration, registered=self.registered)
            else:
                provider = native_provider(provider_id, endpoint, registration)
        self._providers[provider_id] = provider
        return provider

    def uses_litellm(self, provider_id: str) -> bool:
        registration = self._registrations.get(provider_id)
        if registration is not None and not isinstance(registration, ProviderConfig):
            return False
        return route(provider_id, registration) is None


def route(provider_id: str, registration: ProviderConfig | None) -> Endpoint | None:
    """The endpoint a native client calls for this provider, or None when litellm serves it."""
    if registration is not None and registration.via == "litellm":
        return None
    known = ENDPOINTS.get(provider_id)
    if registration is not None and registration.api is not None:
        return known or GENERIC[registration.api]
    return known


def native_provider(provider_id: str, endpoint: Endpoint, registration: ProviderConfig | None) -> ModelProvider:
    api = registration.api if registration is not None and registration.api else endpoint.api
    if api == "openai-completions":
        from flue.models.openai_completions import OpenAICompletionsProvider as cls
    elif api == "openai-responses":
        from flue.models.openai_responses import OpenAIResponsesProvider as cls  # type: ignore[assignment]
    else:
        from flue.models.anthropic_messages import AnthropicMessagesProvider as cls  # type: ignore[assignment]
    return cls(provider_id, endpoint, registration)


def calls_litellm(project: Project) -> bool:
    """Whether any default model of the project (agents' and profiles' ``model:``, flue.yaml
    ``model:``, else ``$FLUE_MODEL``) goes through litellm rather than a native client or a plugin's provider object.
    (A model named only at call time in code is not known here; litellm is then imported on
    its first call.)"""
    registry = ModelRegistry.for_project(project)
    specs = {a.model for a in project.agents.values() if isinstance(a.model, str)}
    if default := project.config.default_model():
        specs.add(default)
    for spec in specs:
        provider_id, sep, _model = spec.partition("/")
        if sep and registry.uses_litellm(provider_id):
            return True
    return False
