"""Wall-clock time as Flue writes it: epoch milliseconds and ISO-8601 UTC strings.

Records and events carry ``2026-05-01T12:00:00.000Z`` (millisecond precision, what
JavaScript's ``toISOString()`` prints); stores keep epoch milliseconds beside them so
comparisons are numeric. ``flue.persistence.kit`` re-exports these for adapter authors.
"""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms(now: datetime | None = None) -> int:
    """Epoch milliseconds of ``now`` (a timezone-aware datetime) or of the wall clock."""
    if now is None:
        return time.time_ns() // 1_000_000
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (e.g. datetime.now(UTC))")
    return int(now.timestamp() * 1000)


@functools.lru_cache(maxsize=512)
def _second(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def ms_to_iso(ms: int) -> str:
    """``2026-01-02T03:04:05.678Z``. Formatting a datetime is slow for how often events and
    records need it, so the part up to the second is memoized (now, deadlines, leases)."""
    second, milli = divmod(ms, 1000)
    return f"{_second(second)}{milli:03d}Z"


def iso_to_ms(value: str) -> int:
    """Parse an ISO-8601 timestamp; naive values are taken as UTC."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


def utc_now_iso(now: datetime | None = None) -> str:
    return ms_to_iso(now_ms(now))
