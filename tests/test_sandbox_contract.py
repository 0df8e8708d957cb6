"""The SandboxEnv contract (flue.testing.sandbox_contract), checked against both built-in sandboxes."""

from __future__ import annotations

from pathlib import Path

import pytest

from flue.sandbox.base import SandboxEnv, SandboxRequest
from flue.sandbox.local import make_local_factory
from flue.sandbox.virtual import make_virtual_factory
from flue.testing.sandbox_contract import SandboxContract


class TestVirtualSandbox(SandboxContract):
    @pytest.fixture
    async def env(self) -> SandboxEnv:
        return await make_virtual_factory({}).create_session_env(SandboxRequest(id="t"))


class TestLocalSandbox(SandboxContract):
    @pytest.fixture
    async def env(self, tmp_path: Path) -> SandboxEnv:
        return await make_local_factory({}).create_session_env(SandboxRequest(id="t", cwd=str(tmp_path)))


async def test_seed_files_land_under_cwd_without_clobbering(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("host version")
    local = await make_local_factory({}).create_session_env(
        SandboxRequest(id="t", cwd=str(tmp_path), files={"keep.txt": "seed", "new/n.txt": "seeded"})
    )
    assert await local.read_file("keep.txt") == "host version"
    assert await local.read_file("new/n.txt") == "seeded"
    virtual = await make_virtual_factory({}).create_session_env(
        SandboxRequest(id="t", cwd="/work", files={"a/b.txt": "seeded"})
    )
    assert virtual.cwd == "/work"
    assert await virtual.read_file("/work/a/b.txt") == "seeded"
