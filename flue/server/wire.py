"""The JSON bodies of Flue's HTTP API, as pydantic models shared by the server and the client.

Field names are camelCase on the wire (``streamUrl``, ``submissionId``);
Python code uses snake_case. Only pydantic is imported here, so the client
can use these models without pulling in the server.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr
from pydantic.alias_generators import to_camel

#: Longest accepted base64 ``data`` of one image, in characters (Flue's limit).
MAX_IMAGE_DATA_CHARS = 14 * 1024 * 1024


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


# -- requests ---------------------------------------------------------------------


class ImageInput(Wire):
    """``{"type": "image", "data": <base64>, "mimeType": "image/png"}``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    type: Literal["image"]
    data: StrictStr = Field(max_length=MAX_IMAGE_DATA_CHARS)
    mime_type: StrictStr = Field(min_length=1)


class AgentPrompt(Wire):
    """The body of ``POST /agents/<name>/<id>``. Unknown keys are ignored, as in Flue."""

    message: StrictStr
    images: list[ImageInput] | None = None
    session: StrictStr | None = Field(None, min_length=1, max_length=200)

    def image_dicts(self) -> list[dict[str, Any]] | None:
        return [image.wire() for image in self.images] if self.images else None


# -- responses ----------------------------------------------------------------------


class AgentAdmission(Wire):
    """202 from ``POST /agents/<name>/<id>``: read ``streamUrl`` from ``offset`` to follow the prompt."""

    stream_url: str
    offset: str
    submission_id: str


class AgentResult(Wire):
    """200 from ``POST /agents/<name>/<id>?wait=result``. ``result`` is ``{"text", "data"}``."""

    result: Any = None
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
