"""Loading plugins into the pluggy manager: built-ins, entry points, project files.

Each loaded plugin is recorded as a :class:`PluginInfo` (``name``, ``source``:
``builtin`` | ``entrypoint`` | ``project``, and where it came from). Failures
become diagnostics naming the plugin.
"""

from __future__ import annotations

import importlib
import importlib.util
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

import pluggy
from pydantic import BaseModel

from flue.authoring.source import import_file, traceback_line
from flue.diagnostics import Diagnostic
from flue.hookspecs import plugin_manager

ENTRY_POINT_GROUP = "flue"
# Framework built-ins: modules with hookimpls, imported cheaply (heavy imports
# live inside the hook bodies).
BUILTIN_PLUGINS: tuple[str, ...] = ("flue.builtin_tools.plugin", "flue.sandbox.plugin", "flue.persistence.plugin",
                                   "flue.models.offline")


class PluginInfo(BaseModel):
    name: str
    source: Literal["builtin", "entrypoint", "project"]
    origin: str
    hooks: list[str] = []


def load_plugins(
    source_root: Path | None,
    *,
    disabled: set[str] | None = None,
    extra: list[tuple[str, Any]] | None = None,
) -> tuple[pluggy.PluginManager, list[PluginInfo], list[Diagnostic]]:
    pm = plugin_manager()
    infos: list[PluginInfo] = []
    diags: list[Diagnostic] = []
    disabled = disabled or set()

    def register(obj: Any, name: str, source: str, origin: str, file: str | None = None) -> None:
        if name in disabled:
            return
        try:
            pm.register(obj, name=name)
            hooks = sorted(h.name for h in pm.get_hookcallers(obj) or [])
            infos.append(PluginInfo(name=name, source=source, origin=origin, hooks=hooks))
        except Exception as exc:
            diags.append(
                Diagnostic(
                    code="plugin.load-failed",
                    file=file,
                    message=f"plugin '{name}' ({source}) could not be registered: {exc}",
                    hint="check that its hook functions match flue.hookspecs (names and parameters)",
                )
            )

    for mod in BUILTIN_PLUGINS:
        register(importlib.import_module(mod), mod, "builtin", mod)

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in disabled:
            continue
        try:
            obj = ep.load()
        except Exception as exc:
            diags.append(
                Diagnostic(
                    code="plugin.load-failed",
                    message=f"plugin '{ep.name}' (entry point {ep.value}) failed to import: {exc!r}",
                    hint=f"reinstall or fix the distribution providing '{ep.value}', or disable it with plugins: {{{ep.name}: false}}",
                )
            )
            continue
        dist = getattr(ep, "dist", None)
        origin = f"{dist.name} {dist.version}" if dist is not None else ep.value
        register(obj, ep.name, "entrypoint", origin)

    if source_root is not None:
        plugin_dir = source_root / "plugins"
        for path in sorted(plugin_dir.glob("*.py")) if plugin_dir.is_dir() else []:
            if path.name.startswith("_"):
                continue
            name = path.stem
            rel = path.relative_to(source_root).as_posix()
            module_name = f"flue_project_plugins.{name}"
            try:
                module = import_file(module_name, path)
            except Exception as exc:
                line = traceback_line(exc, path)
                diags.append(
                    Diagnostic(
                        code="plugin.load-failed",
                        file=rel,
                        line=line,
                        message=f"plugin '{name}' failed to import: {type(exc).__name__}: {exc}",
                        hint="fix the error in the plugin file, or move it out of plugins/",
                    )
                )
                continue
            register(module, name, "project", rel, file=rel)

    for name, obj in extra or []:
        register(obj, name, "project", "<code>")
    return pm, infos, diags


def collect_named(
    pm: pluggy.PluginManager, hook_name: str, what: str
) -> tuple[dict[str, tuple[str, Any]], list[Diagnostic]]:
    """Call a ``{name: value}`` hook on every plugin; return name -> (plugin, value).

    Later plugins override earlier ones; each override is a warning.
    """
    out: dict[str, tuple[str, Any]] = {}
    diags: list[Diagnostic] = []
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        plugin_name = pm.get_name(impl.plugin) or "?"
        try:
            result = impl.function()
        except Exception as exc:
            diags.append(
                Diagnostic(code="plugin.hook-failed", message=f"plugin '{plugin_name}' failed in {hook_name}: {exc!r}")
            )
            continue
        items: Any = result.items() if isinstance(result, dict) else ((getattr(v, "name", None), v) for v in result or [])
        for name, value in items:
            if name in out and out[name][0] != plugin_name:
                diags.append(
                    Diagnostic(
                        severity="warning",
                        code="plugin.override",
                        message=f"{what} '{name}' from plugin '{out[name][0]}' is overridden by plugin '{plugin_name}'",
                    )
                )
            out[name] = (plugin_name, value)
    return out, diags
