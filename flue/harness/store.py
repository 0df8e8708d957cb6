"""The default session store: a dict in process memory.

Used when ``init()`` is given no ``session_store``, so a harness works
standalone (scripts, tests). Histories live as long as the store object; the
persistence adapters (SQLite, PostgreSQL) implement the same
:class:`~flue.persistence.base.SessionStore` protocol durably.
"""

from __future__ import annotations

from flue.persistence.base import SessionData


class MemorySessionStore:
    def __init__(self) -> None:
        self._data: dict[str, str] = {}

    async def save(self, key: str, data: SessionData) -> None:
        # Stored as JSON so callers cannot mutate a saved history by accident,
        # and so only JSON-able messages get in (as with the durable stores).
        self._data[key] = data.model_dump_json()

    async def load(self, key: str) -> SessionData | None:
        raw = self._data.get(key)
        return SessionData.model_validate_json(raw) if raw is not None else None

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    def keys(self) -> list[str]:
        return sorted(self._data)
