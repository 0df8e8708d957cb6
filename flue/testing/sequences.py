"""Event type sequences, for tests that check what a stream or observer received."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

#: Types that arrive in runs of one per chunk; :func:`event_types` folds each run into one.
DELTAS = frozenset({"text_delta", "thinking_delta"})


def event_types(events: Iterable[Any], *, fold_deltas: bool = True) -> list[str]:
    """The ``type`` of each event (typed events or wire dicts), with each run of
    consecutive identical delta types folded into one entry."""
    out: list[str] = []
    for event in events:
        kind = event["type"] if isinstance(event, dict) else event.type
        if fold_deltas and kind in DELTAS and out and out[-1] == kind:
            continue
        out.append(kind)
    return out
