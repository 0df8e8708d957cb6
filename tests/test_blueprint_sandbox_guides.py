"""The sandbox guides' connectors, as the guides write them, through the sandbox contract suite.

- ``sandbox/docker``: the guide's own test against a real daemon (it skips, saying
  why, where ``docker info`` fails), and the same suite with a stand-in ``docker``
  CLI whose ``exec`` runs on this host, so the connector's commands, kill logic
  and error mapping are exercised everywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from blueprint_support import guide_module

FAKE_DOCKER = str(Path(__file__).parent / "fixtures" / "blueprints" / "fake_docker")

_docker = guide_module("sandbox/docker", "tests/test_docker_sandbox.py")


class TestDockerGuide(_docker.TestDockerSandbox):
    pass


class TestDockerGuideWithoutADaemon(_docker.TestDockerSandbox):
    @pytest.fixture
    def docker_cli(self) -> str:
        return FAKE_DOCKER

    @pytest.fixture
    def container(self) -> str:
        return "this-host"

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> str:
        return str(tmp_path / "work")
