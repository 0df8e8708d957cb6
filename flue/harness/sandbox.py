"""Creating the one sandbox env of a harness.

The agent's ``sandbox`` selects it: a kind name or ``{kind: ..., ...options}``
looked up among the kinds plugins registered through ``flue_sandboxes`` (the
project's :class:`~flue.registries.Registries`)
(default kind ``virtual``), a factory object with ``create_session_env``, or a
ready env. When no plugin registers any sandbox kind at all, the harness has
no env: model work still runs, while shell and file operations raise
:class:`~flue.harness.errors.SandboxUnavailableError`.

The working directory: the agent's explicit ``cwd`` is passed on as is (None
when unset) and each factory picks its own default (``virtual``:
``/workspace``; ``local``: the process's current directory). The harness then
takes its cwd from ``env.cwd``, so it always agrees with the env.
"""

from __future__ import annotations

import inspect
import json
from typing import TYPE_CHECKING, Any

from flue.harness.errors import UnknownSandboxKindError
from flue.sandbox.base import SandboxEnv, SandboxRequest

if TYPE_CHECKING:
    from pathlib import Path

    from flue.agent import Agent
    from flue.registries import Registry

DEFAULT_KIND = "virtual"


async def create_env(
    agent: Agent,
    sandboxes: Registry[Any],
    *,
    request_id: str,
    snapshot: bytes | None = None,
    source_root: Path | None = None,
) -> tuple[SandboxEnv | None, str]:
    """Return (env or None, why there is none)."""
    spec = agent.sandbox
    request = SandboxRequest(id=request_id, cwd=agent.cwd, files=dict(agent.files), snapshot=snapshot)
    # the common cases first: a runtime-checkable Protocol's isinstance is slow for every prompt
    options: dict[str, Any]
    if spec is None:
        kind, options = DEFAULT_KIND, {}
    elif isinstance(spec, str):
        kind, options = spec, {}
    else:
        if not isinstance(spec, dict) and hasattr(spec, "model_dump"):
            spec = spec.model_dump()  # a SandboxSpec
        if isinstance(spec, dict):
            options = dict(spec)
            kind = options.pop("kind", DEFAULT_KIND)
        elif isinstance(spec, SandboxEnv):
            return spec, ""
        elif hasattr(spec, "create_session_env"):
            return await spec.create_session_env(request), ""
        else:
            raise TypeError(f"agent '{agent.name}': cannot use {type(spec).__name__} as a sandbox")
    kinds = sandboxes.values()
    if not kinds:
        return None, "no plugin registers a sandbox kind"
    if kind not in kinds:
        raise UnknownSandboxKindError(kind, list(kinds))
    # One factory per kind, options and source root, made on first use and kept with the registry.
    key = f"{kind}\0{json.dumps(options, sort_keys=True, default=repr)}\0{source_root}"
    factory = sandboxes.made.get(key)
    if factory is None:
        make = kinds[kind]
        # Makers may take the project's source root (relative workspace folders resolve against it).
        takes_root = source_root is not None and "source_root" in _parameters(make)
        # The maker gets its own copy: request.options stays what the agent asked for.
        factory = make(dict(options), source_root=source_root) if takes_root else make(dict(options))
        if inspect.isawaitable(factory):
            factory = await factory
        sandboxes.made[key] = factory
    request.options = options
    return await factory.create_session_env(request), ""


def _parameters(fn: Any) -> set[str]:
    try:
        return set(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return set()
