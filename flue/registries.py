"""What the collecting hooks registered, resolved once per loaded project.

``flue_tools``, ``flue_sandboxes``, ``flue_model_providers``, ``flue_persistence_kinds`` and ``flue_channel_kinds``
each return ``{name: value}`` (or a list of named objects). :class:`Registries` calls each
of them once per loaded project (``Project.registries``, made by ``load_project``) or, for
an agent initialized without a project, once per process for the built-in plugins alone;
the harness, the model registry and the server read the result and never call these hooks
themselves. So a plugin's hook runs once per loaded project, not once per ``init()`` or per
submission.

Each :class:`Registry` keeps the diagnostics of its collection (a hook that raised, a name
a later plugin overrode); the project adds them to its own diagnostics, so ``flue info``
shows them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from flue.diagnostics import Diagnostic
from flue.plugins import collect_named

if TYPE_CHECKING:
    import pluggy
    from pydantic import BaseModel

    from flue.authoring.channels import ChannelKind
    from flue.tools import Tool

T = TypeVar("T")


@dataclass(frozen=True)
class Registry(Generic[T]):
    """One hook's registrations: ``name -> (plugin name, value)``, later plugins winning."""

    what: str
    entries: dict[str, tuple[str, T]] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: what users of the registry built from its values, kept for reuse (sandbox factories per options)
    made: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def values(self) -> dict[str, T]:
        """``name -> value``."""
        return {name: value for name, (_plugin, value) in self.entries.items()}

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __len__(self) -> int:
        return len(self.entries)


class Registries:
    """The typed registries of one loaded project (or of the built-in plugins alone).

    Each hook is called on first use of its registry and never again: ``load_project`` uses
    the tools, sandboxes and model providers at once (and keeps their diagnostics), the
    channel kinds when the project has channels (so a project without channels never
    imports a channel package).
    """

    def __init__(self, pm: pluggy.PluginManager | None = None):
        self._pm = pm

    def _collect(self, hook_name: str, what: str) -> Registry[Any]:
        if self._pm is None:
            return Registry(what)
        entries, diagnostics = collect_named(self._pm, hook_name, what)
        return Registry(what, entries, diagnostics)

    @cached_property
    def tools(self) -> Registry[Tool]:
        """``flue_tools``: tool name -> :class:`~flue.tools.Tool` (the built-ins among them)."""
        return self._collect("flue_tools", "tool")

    @cached_property
    def sandboxes(self) -> Registry[Any]:
        """``flue_sandboxes``: kind -> maker (``make(options, *, source_root=None)`` -> factory)."""
        return self._collect("flue_sandboxes", "sandbox")

    @cached_property
    def model_providers(self) -> Registry[Any]:
        """``flue_model_providers``: provider id -> a ``ProviderConfig`` mapping or a ``ModelProvider``."""
        return self._collect("flue_model_providers", "model provider")

    @cached_property
    def persistence_kinds(self) -> Registry[type[BaseModel]]:
        """``flue_persistence_kinds``: persistence kind -> its options model."""
        return self._collect("flue_persistence_kinds", "persistence kind")

    @cached_property
    def channel_kinds(self) -> Registry[ChannelKind]:
        """``flue_channel_kinds``: kind -> :class:`~flue.authoring.channels.ChannelKind`."""
        return self._collect("flue_channel_kinds", "channel kind")
