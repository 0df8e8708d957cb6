"""The JSON bodies of Flue's HTTP API, as pydantic models shared by the server and the client.

Field names are camelCase on the wire (``streamUrl``, ``submissionId``);
Python code uses snake_case, and may read a field by its wire name too
(``admission.streamUrl`` is ``admission.stream_url``). Only pydantic,
``flue.usage`` and ``flue.persistence.base`` (plain models) are imported here,
so the client can use these models without pulling in the server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, StrictStr, field_validator
from pydantic.alias_generators import to_camel

from flue.persistence.base import Camel
from flue.usage import Usage

#: Longest accepted base64 ``data`` of one image by default, in characters (Flue's limit);
#: a server's own is ``limits.image`` in flue.yaml (``flue.server.limits``).
MAX_IMAGE_DATA_CHARS = 14 * 1024 * 1024


class Wire(Camel):
    """A body of the HTTP API: ``admission.run_id`` and ``admission.runId`` are the same field."""

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# -- requests ---------------------------------------------------------------------


class ImageInput(Wire):
    """``{"type": "image", "data": <base64>, "mimeType": "image/png"}``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    type: Literal["image"]
    data: StrictStr
    mime_type: StrictStr = Field(min_length=1)


class AgentPrompt(Wire):
    """The body of ``POST /agents/<name>/<id>``. Unknown keys are ignored, as in Flue."""

    message: StrictStr
    images: list[ImageInput] | None = None
    session: StrictStr | None = Field(None, min_length=1, max_length=200)

    @field_validator("session")
    @classmethod
    def _not_a_task_session(cls, v: str | None) -> str | None:
        if v is not None and v.startswith("task:"):
            raise ValueError("session must not start with 'task:' (the names of task sessions)")
        return v

    def image_dicts(self) -> list[dict[str, Any]] | None:
        return [image.wire() for image in self.images] if self.images else None


# -- responses ----------------------------------------------------------------------


class AgentAdmission(Wire):
    """202 from ``POST /agents/<name>/<id>``: read ``streamUrl`` from ``offset`` to follow the prompt."""

    stream_url: str
    offset: str
    submission_id: str


class PromptModel(Wire):
    provider: str
    id: str


class PromptResponse(Wire):
    """Flue's ``PromptResponse``: the text, the usage (``flue.usage.Usage`` on the wire) and the
    model of the operation's primary turn; ``data`` when a result schema was given."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")
    text: str = ""
    usage: Usage = Field(default_factory=Usage)
    model: PromptModel | None = None
    data: Any = None


class AgentResult(Wire):
    """200 from ``POST /agents/<name>/<id>?wait=result``: ``result`` is the :class:`PromptResponse`."""

    result: PromptResponse
    stream_url: str
    offset: str
    submission_id: str


class WorkflowAdmission(Wire):
    """202 from ``POST /workflows/<name>``; the run's events are at ``streamUrl`` (``/runs/<runId>``)."""

    run_id: str
    stream_url: str
    offset: str


class WorkflowResult(Wire):
    """200 from ``POST /workflows/<name>?wait=result``: the workflow's return value."""

    run_id: str
    result: Any = None
    stream_url: str
    offset: str
