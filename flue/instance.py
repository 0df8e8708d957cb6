"""What an agent knows about the instance it runs in: ``instance.id`` and ``instance.conversation``.

An agent instance is the ``<id>`` of ``/agents/<name>/<id>``; a channel
dispatches each conversation to its own instance, whose id is a
conversation key (:mod:`flue.channels.keys`). The harness of a submission
carries an :class:`InstanceInfo`, which an agent's Markdown instructions read
as ``{{ instance.id }}`` and ``{{ instance.conversation.channel }}``, and a tool
as ``ctx.instance`` (:class:`flue.tools.ToolContext`)::

    ---
    description: Slack assistant
    ---
    {% if instance.conversation and instance.conversation.provider == "slack" %}
    You are answering in Slack thread {{ instance.conversation.thread }}.
    {% endif %}

``conversation`` is None when the id is not a conversation key. Outside an
agent instance (a workflow's ``ctx.init``, a script's ``init``) the id is the
last segment of the harness's storage scope: the run id, or ``local``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flue.channels.keys import ConversationRef, find_conversation

if TYPE_CHECKING:
    from flue.project import Project


@dataclass(frozen=True)
class InstanceInfo:
    id: str
    agent: str
    conversation: ConversationRef | None = None


def instance_info(agent: str, id: str, project: Project | None = None) -> InstanceInfo:
    """The instance ``id`` of ``agent``, its conversation key parsed with the built-in formats
    and those of the project's channels."""
    formats = []
    for ch in (project.channels.values() if project is not None else ()):
        fmt = getattr(ch.channel, "conversation", None)
        if fmt is not None:
            formats.append(fmt)
    return InstanceInfo(id=id, agent=agent, conversation=find_conversation(id, formats=formats))
