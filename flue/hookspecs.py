"""The plugin API: every hook a plugin may implement, documented for its authors.

A plugin is any object or module with functions marked ``@flue.hookimpl``::

    # plugins/hello.py (project plugin), or a module in your distribution
    from flue import hookimpl

    @hookimpl
    def flue_tools():
        from flue import tool

        @tool
        async def shout(text: str) -> str:
            "Upper-case some text."
            return text.upper()

        return [shout]

Plugins come from three places, in this order:

1. **built-ins** registered by the framework itself (``flue.plugins.BUILTIN_PLUGINS``);
2. **installed distributions** declaring an entry point in the group ``flue``::

       [project.entry-points.flue]
       postgres = "flue_postgres.plugin"

3. **project plugins**: every ``plugins/*.py`` in the project's source root.

A plugin that fails to import or register becomes a diagnostic naming it; it
never crashes ``flue info`` or the server. ``flue.yaml`` may hold options for a
plugin under ``plugins: {<name>: {...}}`` (read them in ``flue_configure``) or
disable it with ``plugins: {<name>: false}``.

Hooks are called with keyword arguments; implement only the parameters you
need. Return values of "collecting" hooks (``flue_tools``, ``flue_sandboxes``,
``flue_model_providers``, ``flue_channel_kinds``) are merged; where two plugins
provide the same name the later plugin (project plugins last) wins, and a
diagnostic says so. They run once per loaded project (``flue.registries``), not
per ``init()``. ``docs/plugins.md`` has a section per hook: when it runs, an
example, and the first-party implementation.

This module is a stable promise: hooks may gain optional parameters, never lose
them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypedDict, runtime_checkable

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from aiohttp import web
    from pydantic import BaseModel

    from flue.authoring.channels import ChannelKind
    from flue.blueprints import Blueprint
    from flue.config import FlueConfig, PersistenceConfig, ProviderConfig
    from flue.events import BaseEvent
    from flue.models.base import ModelProvider
    from flue.persistence.base import PersistenceAdapter
    from flue.tools import Tool

PROJECT_NAME = "flue"


class ObserverContext(TypedDict, total=False):
    """What ``flue_observe`` receives beside the event: where it came from.

    ``project`` is the loaded project (absent for a harness made by ``flue.init()`` without
    one), ``scope`` the stream the event belongs to (``runs/<runId>`` or
    ``agents/<name>/<id>``); the ids are the event's own correlation ids, present when set.
    """

    project: Any  # flue.project.Project (a layer above the hooks)
    scope: str
    run_id: str
    instance_id: str
    agent_name: str
    submission_id: str
    dispatch_id: str
    harness: str
    session: str
    parent_session: str
    task_id: str
    operation_id: str
    turn_id: str


@runtime_checkable
class AppRuntime(Protocol):
    """What ``flue_app`` receives as ``runtime`` (``flue.runtime.runtime.Runtime`` is one).

    ``project`` is the loaded project (replaced on a ``flue dev`` reload: read it per
    request), ``stores`` the persistence stores (``flue.persistence.base.PersistenceStores``),
    ``dev`` whether this is ``flue dev``. ``flue.dispatch(agent, id=..., input=...)`` admits
    work from a route.
    """

    project: Any  # flue.project.Project (a layer above the hooks)
    stores: Any  # flue.persistence.base.PersistenceStores
    dev: bool
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


class FlueSpec:
    """Hook specifications. Implement them as plain functions with ``@hookimpl``."""

    @hookspec
    def flue_configure(self, config: FlueConfig, root: Path) -> None:
        """Called once after the project is loaded, before any other hook is used.

        Read your options with ``config.plugin_options("<your plugin name>")``.
        Raise an exception to report bad options: it becomes a diagnostic.
        """

    @hookspec
    def flue_sandboxes(self) -> dict[str, Any]:
        """Return ``{kind: make_factory}`` where ``make_factory(options: dict) -> SandboxFactory``.

        ``make_factory`` may also accept a keyword ``source_root: Path`` (the
        project's source root) to resolve relative paths in its options.

        Agents select a kind with ``sandbox: <kind>`` or ``sandbox: {kind: <kind>, ...options}``.
        ``options`` are the remaining keys of that mapping. ``make_factory`` is called once
        per kind, options and source root, and its factory is kept for every later
        ``init()`` that asks for the same. The factory's
        ``create_session_env(request)`` is called once per ``init()`` and must
        return an object satisfying ``flue.sandbox.base.SandboxEnv``. Built-in
        kinds: ``virtual`` (bashkit) and ``local`` (host). Never delete or stop a
        sandbox you did not create.
        """

    @hookspec
    def flue_model_providers(self) -> dict[str, ProviderConfig | ModelProvider]:
        """Return ``{provider_id: registration}`` for ``provider_id/model`` strings.

        A ``flue.config.ProviderConfig`` registers an endpoint speaking
        ``openai-completions``, ``openai-responses`` or ``anthropic-messages``
        (``api``, ``base_url``, ``api_key``/``api_key_env``, ``headers``), called
        by Flue's native clients (``via: litellm`` to use litellm instead); with
        no ``api`` it reconfigures a catalog provider (e.g. a gateway for
        ``anthropic``). See ``flue.models.registry`` for which client serves what.
        An object implementing ``flue.models.base.ModelProvider`` handles the
        calls itself (used by in-process models such as the scripted test model).
        ``providers:`` in ``flue.yaml`` override plugin registrations.
        """

    @hookspec(firstresult=True)
    def flue_persistence(self, config: PersistenceConfig, root: Path) -> PersistenceAdapter | None:
        """Return a persistence adapter when ``config.kind`` is yours, else ``None``.

        ``flue.yaml``'s ``persistence: {kind: ..., ...options}`` selects the
        adapter; ``config.options`` holds the other keys. The first non-None
        result wins. See ``flue.persistence.base.PersistenceAdapter`` for the
        contract, and ``flue.testing.persistence_contract`` for the test suite
        every adapter should pass.
        """

    @hookspec
    def flue_persistence_kinds(self) -> dict[str, type[BaseModel]]:
        """Return ``{kind: options model}`` for the kinds your ``flue_persistence`` provides.

        Collected once per loaded project. ``flue info`` and every load validate
        ``persistence:`` options (every key but ``kind``) against the model, so a typo is a
        diagnostic before a server starts, and name an unknown kind with a suggestion. A
        persistence plugin without this hook still works; its options are then checked only
        when it opens the adapter.
        """

    @hookspec
    def flue_channel_kinds(self) -> dict[str, ChannelKind]:
        """Return ``{kind: ChannelKind}`` for ``channels/<name>.yaml`` files with that ``kind``.

        A ``flue.authoring.channels.ChannelKind`` carries a pydantic ``options``
        model validating the channel file, and ``build(definition, options)``
        returning a ``Channel``: its routes under ``/channels/<name>/*``, its
        declarative rules (``flue.channels.rules``) and its conversation-key
        format. ``build`` runs at load, so every problem is a diagnostic; read
        secrets at request time. The toolkit is ``flue.channels`` (exact bodies,
        HMAC checks, rules, replies); ``flue-channels`` is a complete example.
        """

    @hookspec
    def flue_tools(self) -> list[Tool]:
        """Return tools that agents may list by name under ``tools:``.

        Names must not collide with built-in tool names (``bash``, ``read``,
        ``write``, ``edit``, ``grep``, ``glob``, ``task``).
        """

    @hookspec
    def flue_observe(self, event: BaseEvent, context: ObserverContext) -> None:
        """Observe every event (workflow runs and agent activity), as it happens.

        ``context`` (an :class:`ObserverContext`) holds ``project`` (the loaded Project),
        ``scope`` (``runs/<runId>`` or ``agents/<name>/<id>``) and the ids of where the event came from, the same
        on a server as in a harness made by ``flue.init()``. Each observer is called
        on its own: one that raises does not keep the others from the event. May be sync or async; it must be quick and must not
        raise (errors are reported once and ignored). Use it for tracing,
        metrics and logging. An event that held one of the project's known secrets
        arrives as a copy with ``[redacted]`` in its place (``flue.redaction``); a
        plugin with secrets of its own declares them with
        ``flue.redaction.declare(env="NAME")``.

        An implementation may carry a ``skip_types`` attribute: event types it
        does not want (any container, read at every event), such as
        ``flue_observe.skip_types = {"text_delta", "turn_request"}``. It is not
        called for them, and ``turn_request`` (the whole model input) is not
        built when every observer skips it. ``flue-opentelemetry`` skips
        everything until it is configured.
        """

    @hookspec
    def flue_app(self, app: web.Application, runtime: AppRuntime) -> None:
        """Add aiohttp middleware or routes to the server (the ``app.ts`` seam).

        Called once while the application is assembled, before Flue's own
        routes are added; ``app.middlewares.append(...)`` and
        ``app.router.add_get(...)`` are both fine. ``runtime`` (an
        :class:`AppRuntime`) gives access to the project and the stores. A middleware may call
        ``flue.configure_provider(...)`` for the request it handles (a
        tenant's gateway key: see ``flue.models.overrides``); a route may call
        ``flue.delete_session(...)`` (see ``flue.runtime.deletion``).
        """

    @hookspec
    def flue_blueprints(self) -> list[Blueprint]:
        """Return blueprints for ``flue add``: Markdown guides (kind ``sandbox``,
        ``channel``, ``database`` or ``tooling``) that a coding agent applies to a project.

        Each is a ``flue.blueprints.Blueprint`` (``kind``, ``name``, ``version``,
        one-line ``description``, ``markdown``, optional ``website`` and
        ``aliases``). ``flue add`` lists them with the plugin's name; a plugin's
        guide replaces a built-in one of the same kind and name.
        ``flue.blueprints.check_blueprint`` checks the shape ``flue update``
        relies on: an H1, an ``## Upgrade guide`` section last with ``### Version N
        — YYYY-MM-DD`` entries, and the marker ``# flue-blueprint: <kind>/<name>@<version>``
        at the top of every file the guide generates.
        """


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(FlueSpec)
    return pm
