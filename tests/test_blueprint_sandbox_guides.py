"""The sandbox guides' connectors, as the guides write them, through the sandbox contract suite.

- ``sandbox/docker``: the guide's own test against a real daemon (it skips, saying
  why, where ``docker info`` fails), and the same suite with a stand-in ``docker``
  CLI whose ``exec`` runs on this host, so the connector's commands, kill logic
  and error mapping are exercised everywhere.
- ``sandbox/daytona`` and ``sandbox/e2b``: the guides' tests (which need real
  credentials and skip without them) against local stand-ins of the
  providers' HTTP APIs (``fixtures/blueprints/fake_providers.py``).
- ``sandbox/modal``: the guide's test with a stand-in for the SDK's ``Sandbox``
  (``exec`` and its process streams) in place of the ``modal`` package.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import pytest_asyncio
from blueprint_support import guide_module
from fixtures.blueprints.fake_providers import Aio, FakeModalSandbox, fake_daytona, fake_e2b

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


# -- Daytona and E2B: the guides' own tests, against local stand-ins of the providers' HTTP APIs --

_daytona = guide_module("sandbox/daytona", "tests/test_daytona_sandbox.py")
_e2b = guide_module("sandbox/e2b", "tests/test_e2b_sandbox.py")


class TestDaytonaGuideAgainstAFakeToolboxAPI(_daytona.TestDaytonaSandbox):
    @pytest_asyncio.fixture
    async def options(self, monkeypatch: pytest.MonkeyPatch):
        fake = await fake_daytona("daytona-test-key").start()
        monkeypatch.setenv("DAYTONA_API_KEY", "daytona-test-key")
        yield {"sandbox": "sandbox-1", "api_url": fake.url, "poll": 0.02}
        await fake.stop()

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> str:
        return str(tmp_path / "work")


class TestE2BGuideAgainstFakeControlPlaneAndEnvd(_e2b.TestE2BSandbox):
    @pytest_asyncio.fixture
    async def options(self, monkeypatch: pytest.MonkeyPatch):
        fake = await fake_e2b("e2b-test-key").start()
        monkeypatch.setenv("E2B_API_KEY", "e2b-test-key")
        yield {"sandbox": "sandbox-1", "api_url": fake.url, "envd_url": fake.url}
        await fake.stop()

    @pytest.fixture
    def workdir(self, tmp_path: Path) -> str:
        return str(tmp_path / "work")


async def test_the_connectors_send_the_providers_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from flue.sandbox.base import SandboxRequest

    daytona, e2b = await fake_daytona("right").start(), await fake_e2b("right").start()
    try:
        monkeypatch.setenv("DAYTONA_API_KEY", "wrong")
        factory = _daytona_kind()({"sandbox": "s", "api_url": daytona.url})
        with pytest.raises(RuntimeError, match="HTTP 401"):
            await factory.create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))
        monkeypatch.setenv("E2B_API_KEY", "wrong")
        factory = _e2b_kind()({"sandbox": "s", "api_url": e2b.url, "envd_url": e2b.url})
        with pytest.raises(RuntimeError, match="HTTP 401"):
            await factory.create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))
    finally:
        await daytona.stop()
        await e2b.stop()


def _kinds(module) -> dict:
    from flue.project import load_project

    return {k: v for found in load_project(module.ROOT).pm.hook.flue_sandboxes() for k, v in found.items()}


def _daytona_kind():
    return _kinds(_daytona)["daytona"]


def _e2b_kind():
    return _kinds(_e2b)["e2b"]


# -- Modal: the guide's test with a stand-in for the SDK's Sandbox (Modal has no public REST API) --

_modal = guide_module("sandbox/modal", "tests/test_modal_sandbox.py")


class TestModalGuideWithAStandInSandbox(_modal.TestModalSandbox):
    @pytest_asyncio.fixture
    async def env(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
        from types import SimpleNamespace

        from flue.sandbox.base import SandboxRequest

        asked: list[str] = []

        async def from_id(sandbox_id: str) -> FakeModalSandbox:
            asked.append(sandbox_id)
            return FakeModalSandbox()

        monkeypatch.setitem(sys.modules, "modal", SimpleNamespace(Sandbox=SimpleNamespace(from_id=Aio(from_id))))
        factory = _modal.modal_kind()({"sandbox": "sb-test"})
        env = await factory.create_session_env(SandboxRequest(id="t", cwd=str(tmp_path / "work"),
                                                              files={"seeded.txt": "hi"}))
        assert asked == ["sb-test"] and await env.read_file("seeded.txt") == "hi"
        await env.rm("seeded.txt")
        return env
