"""Resolving ``provider/model`` strings to a provider object.

Flue owns the provider registry (litellm's own registry is not extended).
Registrations come from, lowest precedence first:

1. litellm's catalog: an unregistered id such as ``anthropic`` or ``openai``
   passes through to litellm as ``<id>/<model>``;
2. plugins, through the ``flue_model_providers`` hook (a
   :class:`~flue.config.ProviderConfig` or a
   :class:`~flue.models.base.ModelProvider` object);
3. ``providers:`` in ``flue.yaml``;
4. ``init(..., providers={...})`` and :meth:`ModelRegistry.register` in code.

A ``ProviderConfig`` with ``api`` registers a new endpoint
(``openai-completions`` or ``anthropic-messages``) called through litellm; one
without ``api`` reconfigures a catalog provider (gateway ``base_url``,
``api_key``, ``headers``). Building a registry never imports litellm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flue.config import ProviderConfig
from flue.harness.errors import InvalidModelError
from flue.models.base import ModelProvider
from flue.models.catalog import ModelInfo, model_info

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
        """The wire protocol, as events name it (``openai-completions``, ...; ``litellm`` for the
        catalog providers litellm serves; a plugin object's own ``api`` attribute, else ``custom``)."""
        own = getattr(self.provider, "api", None)
        if isinstance(own, str):
            return own
        if self.registration is not None and self.registration.api:
            return self.registration.api
        return "litellm" if type(self.provider).__name__ == "LiteLLMProvider" else "custom"

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


class ModelRegistry:
    def __init__(self, registrations: dict[str, Registration] | None = None):
        self._registrations: dict[str, Registration] = {}
        self._providers: dict[str, ModelProvider] = {}
        for provider_id, registration in (registrations or {}).items():
            self.register(provider_id, registration)

    @classmethod
    def for_project(
        cls, project: Project | None, extra: dict[str, Registration] | None = None
    ) -> ModelRegistry:
        registry = cls()
        if project is not None and project.pm is not None:
            from flue.plugins import collect_named

            named, _diags = collect_named(project.pm, "flue_model_providers", "model provider")
            for provider_id, (_plugin, registration) in named.items():
                registry.register(provider_id, registration)
        if project is not None:
            for provider_id, config in project.config.providers.items():
                registry.register(provider_id, config)
        for provider_id, registration in (extra or {}).items():
            registry.register(provider_id, registration)
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
        config = registration if isinstance(registration, ProviderConfig) else None
        return ResolvedModel(provider_id, model, self.provider(provider_id), config)

    def provider(self, provider_id: str) -> ModelProvider:
        cached = self._providers.get(provider_id)
        if cached is not None:
            return cached
        registration = self._registrations.get(provider_id)
        if registration is not None and not isinstance(registration, ProviderConfig):
            provider: ModelProvider = registration
        else:
            from flue.models.litellm_provider import LiteLLMProvider

            # Whether an unregistered id exists in litellm's catalog is checked on
            # the first call, so resolving stays free of the litellm import.
            provider = LiteLLMProvider(provider_id, registration, registered=self.registered)
        self._providers[provider_id] = provider
        return provider


def calls_litellm(project: Project) -> bool:
    """Whether any default model of the project (agents' ``model:``, flue.yaml ``model:``)
    goes through litellm rather than a plugin's own provider object."""
    registry = ModelRegistry.for_project(project)
    specs = {a.model for a in project.agents.values() if isinstance(a.model, str)}
    if project.config.model:
        specs.add(project.config.model)
    for spec in specs:
        provider_id = spec.partition("/")[0]
        if not isinstance(registry.registration(provider_id), ModelProvider):
            return True
    return False
