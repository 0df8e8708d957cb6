"""The size limits of what callers send (``limits:`` in flue.yaml, :class:`flue.config.LimitsConfig`).

One place for HTTP routes and WebSockets: a prompt's text, its images and
each image's data (400 ``invalid_request`` naming the limit, as Flue words its
image limit), and a workflow payload (413 ``payload_too_large``). The body
limit itself is aiohttp's ``client_max_size`` and the sockets' ``max_msg_size``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flue.server.errors import invalid_request, payload_too_large

if TYPE_CHECKING:
    from flue.config import LimitsConfig
    from flue.server.wire import AgentPrompt

def check_prompt(prompt: AgentPrompt, limits: LimitsConfig) -> None:
    """Raise a 400 when the prompt's text, image count or any image's data is over its limit."""
    if len(prompt.message) > limits.message:
        raise invalid_request(
            "The request body is invalid.",
            f"The message exceeds the {int(limits.message)} character limit (limits.message in flue.yaml).",
        )
    images = prompt.images or []
    if len(images) > limits.images:
        raise invalid_request(
            "The request body is invalid.",
            f"A prompt carries at most {limits.images} images (limits.images in flue.yaml).",
        )
    if any(len(image.data) > limits.image for image in images):
        raise invalid_request(
            "The request body is invalid.", f"Image data exceeds the {int(limits.image)} character limit."
        )


def check_payload_size(size: int, limits: LimitsConfig) -> None:
    """Raise a 413 when a workflow payload of ``size`` bytes (its JSON text) is over the limit."""
    if size > limits.payload:
        raise payload_too_large(
            f"A workflow payload is at most {int(limits.payload)} bytes of JSON (limits.payload in flue.yaml)."
        )
