"""Channels: ``channels/<name>.yaml`` with a ``kind`` plus that kind's options.

Options are validated by the kind's pydantic schema when a plugin registered
the kind through ``flue_channel_kinds``; otherwise they are kept as given and a
warning says the kind is unknown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from flue.authoring.source import load_yaml_mapping
from flue.diagnostics import Diagnostic


class ChannelDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    file: str | None = None
    kind: str
    options: dict[str, Any] = {}


def parse_channel_file(path: Path, *, rel: str) -> tuple[ChannelDefinition | None, list[Diagnostic]]:
    name = path.stem
    if not name or ":" in name:
        return None, [Diagnostic(code="channel.invalid-name", file=rel, message=f"channel name '{name}' must contain no ':'")]
    data, _, diags = load_yaml_mapping(path, rel, code="channel", what="a channel file")
    if data is None:
        return None, diags
    if not isinstance(data.get("kind"), str):
        return None, [
            Diagnostic(
                code="channel.missing-kind",
                file=rel,
                line=1,
                message="a channel file must be a mapping with a 'kind' (for example 'kind: webhook')",
            )
        ]
    options = {k: v for k, v in data.items() if k != "kind"}
    return ChannelDefinition(name=name, file=rel, kind=data["kind"], options=options), []


class ChannelKind(BaseModel):
    """A channel kind registered by a plugin through ``flue_channel_kinds``.

    ``options`` validates the channel file's keys (other than ``kind``).
    ``handler`` (optional) is an async ``handler(request, channel, runtime)``
    serving ``/channels/<name>/*``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)
    name: str
    description: str = ""
    options: type[BaseModel] | None = None
    handler: Any = None
