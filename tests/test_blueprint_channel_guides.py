"""The channel guides' plugins, as the guides write them, through their own end-to-end tests."""

from __future__ import annotations

from blueprint_support import guide_module

pytest_plugins = ["flue.testing.pytest_plugin"]

_slack = guide_module("channel/slack", "tests/test_slack_channel.py")
test_slack_mentions_are_answered_in_the_thread_once = _slack.test_mentions_are_answered_in_the_thread_once
slack_api = _slack.slack_api
