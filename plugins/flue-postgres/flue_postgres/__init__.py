"""PostgreSQL persistence for Flue (``persistence: {kind: postgres}``)."""

from flue_postgres.adapter import PostgresAdapter

__all__ = ["PostgresAdapter"]
