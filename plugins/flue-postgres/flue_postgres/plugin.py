"""The ``postgres`` persistence kind for ``flue.yaml``.

::

    persistence:
      kind: postgres
      url_env: DATABASE_URL      # default; or url: postgresql://... (alias: dsn)
      schema: flue               # default public
      pool_size: 5               # connections per server process

Registered through the ``flue`` entry-point group, so installing this
distribution is all it takes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flue.hookspecs import hookimpl
from flue.persistence.plugin import options_or_error


class PostgresOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    dsn: str | None = None
    url_env: str | None = None
    schema_: str = Field("public", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: int = Field(5, ge=1, le=100)
    connect_timeout: float = Field(10.0, gt=0)

    @model_validator(mode="after")
    def _one_source(self) -> PostgresOptions:
        given = [k for k in ("url", "dsn", "url_env") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give only one of url, dsn, url_env (got {', '.join(given)})")
        return self

    def resolve_url(self, environ: dict[str, str] | os._Environ[str] | None = None) -> str:
        env = os.environ if environ is None else environ
        if self.url or self.dsn:
            return str(self.url or self.dsn)
        name = self.url_env or "DATABASE_URL"
        value = env.get(name)
        if not value:
            raise ValueError(
                f"persistence (kind: postgres): environment variable {name} is not set; set it (e.g. in .env) "
                "to a PostgreSQL URL, or give url: in flue.yaml"
            )
        return value


def parse_options(options: dict[str, Any]) -> PostgresOptions:
    """Validate ``persistence:`` options (one readable error naming every problem)."""
    opts: PostgresOptions = options_or_error(PostgresOptions, "postgres", options)
    return opts


@hookimpl
def flue_persistence_kinds() -> dict[str, type[BaseModel]]:
    """The options model, so ``flue info`` checks ``persistence:`` before a server starts."""
    return {"postgres": PostgresOptions}


@hookimpl
def flue_persistence(config: Any, root: Path) -> Any:
    if config.kind != "postgres":
        return None
    from flue_postgres.adapter import PostgresAdapter

    opts = parse_options(config.options)
    return PostgresAdapter(
        opts.resolve_url(), schema=opts.schema_, pool_size=opts.pool_size, connect_timeout=opts.connect_timeout
    )
