"""Flue's ids are ULIDs: time-sortable, 26 Crockford base32 characters after the prefix."""

from __future__ import annotations

import time

from ulid import ULID

from flue.ids import new_id, ulid


def test_an_id_is_a_ulid_of_now_with_its_prefix() -> None:
    before = int(time.time() * 1000)
    prefix, _, text = new_id("run").partition("_")
    after = int(time.time() * 1000)
    assert prefix == "run" and len(text) == 26
    parsed = ULID.from_str(text)  # the reference implementation reads it back
    assert str(parsed) == text
    assert before <= parsed.milliseconds <= after


def test_ids_differ_and_sort_by_time() -> None:
    first = [ulid() for _ in range(2000)]
    assert len(set(first)) == len(first)
    time.sleep(0.002)
    later = ulid()
    assert all(later > earlier for earlier in first)
