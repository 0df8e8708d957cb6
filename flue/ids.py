"""Identifiers: time-sortable ULIDs with a readable prefix (``run_01J...``)."""

from __future__ import annotations

from ulid import ULID


def new_id(prefix: str) -> str:
    return f"{prefix}_{ULID()}"


def run_id() -> str:
    return new_id("run")
