"""Flue channels: Slack, GitHub and signed webhooks.

Installed, this package registers the channel kinds ``slack``, ``github`` and
``webhook`` (entry point ``flue`` -> :mod:`flue_channels.plugin`) for
``channels/<name>.yaml`` files, and offers their constructors for
``channels/<name>.py`` modules::

    from flue_channels import slack_channel, github_channel, webhook_channel

Each module's docstring is its manual: :mod:`flue_channels.slack`,
:mod:`flue_channels.github`, :mod:`flue_channels.webhook`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flue_channels.github import GitHubChannel, GitHubDelivery, github_channel
    from flue_channels.slack import SlackChannel, slack_channel
    from flue_channels.webhook import WebhookChannel, webhook_channel

_LAZY = {
    "slack_channel": "flue_channels.slack",
    "SlackChannel": "flue_channels.slack",
    "github_channel": "flue_channels.github",
    "GitHubChannel": "flue_channels.github",
    "GitHubDelivery": "flue_channels.github",
    "webhook_channel": "flue_channels.webhook",
    "WebhookChannel": "flue_channels.webhook",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flue_channels' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
