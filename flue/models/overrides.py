"""``configure_provider``: per-request provider transport settings (Flue's ``configureProvider``).

A ``flue_app`` middleware can point a provider at a tenant's gateway, or use
the tenant's key, for the work that one request starts and nothing else::

    @flue.hookimpl
    def flue_app(app, runtime):
        @web.middleware
        async def tenant_gateway(request, handler):
            flue.configure_provider("anthropic", api_key=lookup_key(request), headers={"X-Tenant": ...})
            return await handler(request)
        app.middlewares.append(tenant_gateway)

The settings (``base_url``, ``headers`` merged over the registration's,
``api_key``, ``store_responses``) are layered over the provider's
registration (``providers:`` in ``flue.yaml``, a plugin, or the catalog) when
a model is resolved. They live in a :mod:`contextvars` variable: aiohttp runs
every request in a task of its own, so they reach exactly what that request
runs (its workflow run, tasks it starts) and never another request. Called
outside any request (at import, in a plugin's setup) they apply to
everything started from that context afterwards. A later call for the same
provider in the same context adds to (and for the same keys replaces) the
earlier settings.

Agent prompts and dispatches are durable submissions that a coordinator runs
in its own task: the settings in effect when a submission is admitted are
kept in this process's memory (never persisted: they may hold secrets) and
applied when this process runs it. An attempt that runs elsewhere (after a
crash, or on another replica) uses the registration alone.

A registration that is a provider *object* (a plugin's) cannot be
reconfigured: resolving a model of it with settings in effect raises
:class:`~flue.harness.errors.ProviderConfigError`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flue.config import ProviderConfig


class ProviderSettings(BaseModel):
    """One provider's request-scoped transport settings (unset fields leave the registration's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    base_url: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    api_key: str | None = None
    store_responses: bool | None = None

    def merged(self, other: ProviderSettings) -> ProviderSettings:
        """``other`` over these settings (headers merged key by key)."""
        data = self.model_dump()
        for key, value in other.model_dump(exclude_unset=True).items():
            data[key] = {**data["headers"], **value} if key == "headers" else value
        return ProviderSettings(**data)


_SETTINGS: contextvars.ContextVar[Mapping[str, ProviderSettings]] = contextvars.ContextVar(
    "flue_provider_settings", default=MappingProxyType({})  # read-only: every change sets a new mapping
)
# Settings captured when a durable submission was admitted here: id -> (forget after, settings).
_ADMITTED: dict[str, tuple[float, Mapping[str, ProviderSettings]]] = {}


def configure_provider(
    name: str,
    *,
    base_url: str | None = None,
    headers: Mapping[str, str] | None = None,
    api_key: str | None = None,
    store_responses: bool | None = None,
) -> None:
    """Set transport settings for provider ``name`` in the current context (see the module docstring)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"configure_provider() needs a provider id such as 'anthropic', not {name!r}")
    given: dict[str, Any] = {"base_url": base_url, "api_key": api_key, "store_responses": store_responses}
    update = ProviderSettings(**{k: v for k, v in given.items() if v is not None},
                              **({"headers": dict(headers)} if headers else {}))
    current = dict(_SETTINGS.get())
    current[name] = current[name].merged(update) if name in current else update
    _SETTINGS.set(current)  # a new mapping: a context that copied the old one keeps it


def current_settings() -> Mapping[str, ProviderSettings]:
    return _SETTINGS.get()


def override_registration(provider_id: str, registration: Any) -> ProviderConfig | None:
    """The registration with the current context's settings for ``provider_id`` on top, or None
    when there are none (the registry then resolves as usual)."""
    settings = _SETTINGS.get().get(provider_id)
    if settings is None:
        return None
    if registration is not None and not isinstance(registration, ProviderConfig):
        from flue.harness.errors import ProviderConfigError

        raise ProviderConfigError(
            f"configure_provider('{provider_id}') cannot change provider '{provider_id}': a plugin registered it "
            "as a provider object; configure that plugin instead"
        )
    base = registration or ProviderConfig()
    update: dict[str, Any] = {}
    if settings.base_url is not None:
        update["base_url"] = settings.base_url
    if settings.api_key is not None:
        update.update(api_key=settings.api_key, api_key_env=None)
    if settings.headers:
        update["headers"] = {**base.headers, **settings.headers}
    if settings.store_responses is not None and "store_responses" in ProviderConfig.model_fields:
        update["store_responses"] = settings.store_responses
    return base.model_copy(update=update)


# -- durable submissions ------------------------------------------------------------------


def remember_for(submission_id: str, keep_s: float) -> None:
    """Keep the current context's settings for a submission admitted here (for ``keep_s``
    seconds at most: its deadline), so :func:`use_admitted` can put them back when it runs."""
    now = time.monotonic()
    for sid in [sid for sid, (until, _s) in _ADMITTED.items() if until < now]:
        del _ADMITTED[sid]
    settings = _SETTINGS.get()
    if settings:
        _ADMITTED[submission_id] = (now + keep_s, settings)


def use_admitted(submission_id: str) -> None:
    """In the task that runs a submission (its own context): put back the settings it was
    admitted with, if it was admitted by this process."""
    kept = _ADMITTED.pop(submission_id, None)
    if kept is not None:
        _SETTINGS.set(kept[1])
