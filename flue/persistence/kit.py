"""Helpers for persistence adapter authors (public, like ``base`` and ``submissions``).

Everything here is backend-neutral: time conversion, canonical JSON and
hashing, run-list cursors, the schema-version check, and an in-process
listener registry. The built-in SQLite adapter and the PostgreSQL plugin both
use it, so third-party adapters that do too behave the same way.

Time convention: records carry ISO-8601 UTC strings with millisecond precision
(``2026-05-01T12:00:00.000Z``, what JavaScript's ``toISOString()`` prints);
adapters store integer epoch milliseconds next to them so that comparisons
(lease expiry, deadlines, ordering) are numeric. Methods that depend on the
clock take an optional ``now: datetime`` so tests can move time by hand.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

# The time helpers, re-exported for adapter authors (they live in flue.clock, below the events).
from flue.clock import iso_to_ms as iso_to_ms
from flue.clock import ms_to_iso as ms_to_iso
from flue.clock import now_ms as now_ms
from flue.clock import utc_now_iso as utc_now_iso
from flue.events import WireDict
from flue.persistence.base import SCHEMA_VERSION, SchemaVersionError
from flue.strict_json import fast_text

log = logging.getLogger("flue.persistence")

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000


# -- time -----------------------------------------------------------------------




# -- JSON ---------------------------------------------------------------------------


# Built once: json.dumps() with options makes a new encoder on every call.
_STORED = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_CANONICAL = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)


def dumps(value: Any) -> str:
    """JSON text for storage. Raises TypeError/ValueError on values JSON cannot hold.

    Encoded by pydantic-core's serializer (:func:`flue.strict_json.fast_text`: events and
    histories are stored on every prompt); where it cannot say, ``json`` decides (and refuses
    NaN and infinities). An event's wire form (:class:`flue.events.WireDict`) comes with its
    text, encoded the same way."""
    if type(value) is WireDict:
        return value.json
    text = fast_text(value)
    return _STORED.encode(value) if text is None else text


def canonical_json(value: Any) -> str:
    """Key-sorted compact JSON: equal values give equal text (used for input hashes)."""
    return _CANONICAL.encode(value)


def input_hash(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


# -- run listing ------------------------------------------------------------------


def clamp_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIST_LIMIT
    return max(1, min(int(limit), MAX_LIST_LIMIT))


def encode_run_cursor(started_ms: int, run_id: str) -> str:
    """Opaque keyset cursor: list_runs continues strictly after (started_ms, run_id)."""
    raw = json.dumps([started_ms, run_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_run_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        started_ms, run_id = json.loads(raw)
        if not isinstance(started_ms, int) or not isinstance(run_id, str):
            raise TypeError
    except Exception:
        raise ValueError(f"invalid run cursor {cursor!r}") from None
    return started_ms, run_id


# -- schema version -----------------------------------------------------------------


def check_schema_version(stored: str | int | None, where: str) -> None:
    """Refuse to open a store this Flue does not understand.

    ``stored`` is the stamped value (``None`` when nothing is stamped);
    ``where`` names the database for the message (e.g. ``SQLite database x.db``).
    """
    if stored is None:
        raise SchemaVersionError(
            f"{where} has no Flue schema version stamp; run the adapter's migrate() first "
            "(Flue's server does this at startup)"
        )
    try:
        version = int(str(stored))
    except ValueError:
        version = None
    if version is None or version < 1:
        raise SchemaVersionError(
            f"{where} carries an unknown Flue schema version {stored!r} (this Flue knows {SCHEMA_VERSION}); "
            "point persistence at a database written by Flue"
        )
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where} was written by a newer Flue (schema {version}, this Flue knows {SCHEMA_VERSION}); "
            "upgrade Flue or point persistence at another database"
        )
    # Older known versions would be upgraded by migrate(); version 1 is the first.


# -- in-process notification --------------------------------------------------------

Listener = Callable[[str], None]


class Listeners:
    """Per-key listener registry for ``subscribe`` methods.

    A listener runs on the event loop that was running when it subscribed: when
    a write completes on another thread or loop it is handed over with
    ``call_soon_threadsafe``. A listener that raises is logged and ignored,
    so one bad subscriber cannot break a writer.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[tuple[Listener, asyncio.AbstractEventLoop | None]]] = {}

    def add(self, key: str, listener: Listener) -> Callable[[], None]:
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        entry = (listener, loop)
        with self._lock:
            self._by_key.setdefault(key, []).append(entry)

        def unsubscribe() -> None:
            with self._lock:
                entries = self._by_key.get(key)
                if entries and entry in entries:
                    entries.remove(entry)
                    if not entries:
                        del self._by_key[key]

        return unsubscribe

    def keys(self) -> list[str]:
        """The keys that have listeners now (safe from any thread)."""
        with self._lock:
            return list(self._by_key)

    def notify_all(self) -> None:
        """Call every listener of every key (a wake-up after notifications may have been missed)."""
        for key in self.keys():
            self.notify(key)

    def notify(self, key: str, value: str | None = None) -> None:
        """Call the listeners of ``key`` with ``value`` (default: the key itself)."""
        arg = key if value is None else value
        with self._lock:
            entries = list(self._by_key.get(key, ()))
        if not entries:
            return
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for listener, loop in entries:
            if loop is None or loop is current:
                _call(listener, arg)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_call, listener, arg)


def _call(listener: Listener, key: str) -> None:
    try:
        listener(key)
    except Exception:
        log.exception("persistence listener for %r failed", key)
