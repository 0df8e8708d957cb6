"""Blueprints: Markdown implementation guides that ``flue add`` prints for a
coding agent to apply (a sandbox connector, a channel, a database adapter...)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

BlueprintKind = Literal["sandbox", "channel", "database", "tooling"]


class Blueprint(BaseModel):
    kind: BlueprintKind
    name: str
    description: str
    markdown: str
    version: int = 1
