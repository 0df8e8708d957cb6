"""Identifiers: time-sortable ULIDs with a readable prefix (``run_01J...``).

A ULID is 48 bits of Unix milliseconds and 80 random bits (``os.urandom``) in Crockford's
base32: 10 characters of time, 16 of randomness. Encoded here ten bits (two characters) at a
time from a table; the ``ulid`` package's object per id cost about three times as much, and
ids are made several times per request (runs, submissions, operations, turns).
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # every 10-bit value as two characters


def ulid() -> str:
    """A new ULID string."""
    p, t, r = _PAIRS, time.time_ns() // 1_000_000, int.from_bytes(os.urandom(10), "big")
    return (p[t >> 40] + p[(t >> 30) & 1023] + p[(t >> 20) & 1023] + p[(t >> 10) & 1023] + p[t & 1023]
            + p[r >> 70] + p[(r >> 60) & 1023] + p[(r >> 50) & 1023] + p[(r >> 40) & 1023]
            + p[(r >> 30) & 1023] + p[(r >> 20) & 1023] + p[(r >> 10) & 1023] + p[r & 1023])


def new_id(prefix: str) -> str:
    return f"{prefix}_{ulid()}"


def run_id() -> str:
    return new_id("run")
