"""The channel guides' plugins, as the guides write them, through their own end-to-end tests
(a real `flue start`, signed webhooks, a scripted model, a local stand-in for the service's API)."""

from __future__ import annotations

from blueprint_support import guide_module

pytest_plugins = ["flue.testing.pytest_plugin"]

_slack = guide_module("channel/slack", "tests/test_slack_channel.py")
_github = guide_module("channel/github", "tests/test_github_channel.py")
_discord = guide_module("channel/discord", "tests/test_discord_channel.py")

slack_api, github_api, discord_api = _slack.slack_api, _github.github_api, _discord.discord_api
test_slack_mentions_are_answered_in_the_thread_once = _slack.test_mentions_are_answered_in_the_thread_once
test_github_mentions_are_answered_with_a_comment_once = _github.test_mentions_are_answered_with_a_comment_once
test_discord_slash_commands_are_deferred_then_answered = _discord.test_slash_commands_are_deferred_then_answered
