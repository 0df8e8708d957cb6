"""The plugin: registers the ``slack``, ``github`` and ``webhook`` channel kinds.

It uses only the public hook API (``flue_channel_kinds``), as any third-party
channel package would.
"""

from __future__ import annotations

from typing import Any

from flue import hookimpl


@hookimpl
def flue_channel_kinds() -> dict[str, Any]:
    from flue.authoring.channels import ChannelKind
    from flue_channels.github import GitHubOptions, build_github
    from flue_channels.slack import SlackOptions, build_slack
    from flue_channels.webhook import WebhookOptions, build_webhook

    return {
        "slack": ChannelKind(
            name="slack", description="Slack Events API, interactivity and slash commands",
            options=SlackOptions, build=build_slack,
        ),
        "github": ChannelKind(
            name="github", description="GitHub webhooks (X-Hub-Signature-256)",
            options=GitHubOptions, build=build_github,
        ),
        "webhook": ChannelKind(
            name="webhook", description="any HMAC-signed or bearer-protected webhook",
            options=WebhookOptions, build=build_webhook,
        ),
    }
