"""Built-in plugin: the ``sqlite`` persistence kind, and opening the configured adapter.

``flue.yaml``::

    persistence:
      kind: sqlite
      path: .flue-state/state.db   # relative to the project root (never under .flue/ or src/); omit (or ":memory:") for in-memory

Other kinds come from plugins implementing ``flue_persistence`` (for example
``flue-postgres`` for ``kind: postgres``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from flue.config import SQLiteOptions
from flue.hookspecs import hookimpl

if TYPE_CHECKING:
    from flue.config import PersistenceConfig
    from flue.persistence.base import PersistenceAdapter, PersistenceStores
    from flue.project import Project


class PersistenceConfigError(ValueError):
    """``persistence:`` in flue.yaml names an unknown kind or carries bad options."""


def options_or_error(model: type[BaseModel], kind: str, options: dict[str, Any]) -> Any:
    """Validate adapter options, turning pydantic errors into one readable message."""
    try:
        return model.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(options)'}: {err['msg']}" for err in exc.errors()
        )
        raise PersistenceConfigError(f"persistence (kind: {kind}) options are invalid: {problems}") from None


@hookimpl
def flue_persistence_kinds() -> dict[str, type[BaseModel]]:
    return {"sqlite": SQLiteOptions}


@hookimpl
def flue_persistence(config: PersistenceConfig, root: Path) -> PersistenceAdapter | None:
    if config.kind != "sqlite":
        return None
    from flue.persistence.sqlite import SQLiteAdapter

    opts: SQLiteOptions = options_or_error(SQLiteOptions, "sqlite", config.options)
    if opts.path is None or opts.path == ":memory:":
        return SQLiteAdapter()
    path = Path(opts.path).expanduser()
    return SQLiteAdapter(path if path.is_absolute() else Path(root) / path)


async def open_persistence(project: Project) -> tuple[PersistenceAdapter, PersistenceStores]:
    """Create the configured adapter through the plugin hook, migrate it and connect.

    Raises PersistenceConfigError when no plugin handles the configured kind or
    the options are bad, and SchemaVersionError when the database was written
    by a newer Flue. The caller owns ``adapter.close()`` (when present).
    """
    if project.pm is None:
        raise RuntimeError("the project has no plugin manager (load it with flue.project.load_project)")
    config = project.config.persistence
    adapter = project.pm.hook.flue_persistence(config=config, root=project.root)
    if adapter is None:
        raise PersistenceConfigError(
            f"no plugin provides persistence kind {config.kind!r}; built in: 'sqlite'. "
            f"Install the plugin for {config.kind!r} (e.g. pip install flue-{config.kind}) or fix "
            "persistence.kind in flue.yaml"
        )
    migrate = getattr(adapter, "migrate", None)
    try:
        if migrate is not None:
            await migrate()
        stores = await adapter.connect()
    except BaseException:
        close = getattr(adapter, "close", None)
        if close is not None:
            await close()
        raise
    return adapter, stores
