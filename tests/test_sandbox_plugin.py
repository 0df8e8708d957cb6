"""The built-in sandbox plugin, as the framework sees it: through the flue_sandboxes hook."""

from __future__ import annotations

from pathlib import Path

import pytest

from flue.plugins import collect_named
from flue.project import load_project
from flue.sandbox.base import SandboxRequest
from flue.sandbox.options import SandboxOptionsError

REPO = Path(__file__).resolve().parent.parent


def sandbox_kinds(root: Path) -> dict:
    project = load_project(root)
    assert project.pm is not None
    kinds, diags = collect_named(project.pm, "flue_sandboxes", "sandbox")
    assert diags == []
    return {name: maker for name, (_plugin, maker) in kinds.items()}


def test_builtin_plugin_registers_virtual_and_local(tmp_path: Path) -> None:
    kinds = sandbox_kinds(tmp_path)
    assert {"virtual", "local"} <= set(kinds)
    assert kinds["virtual"].__module__ == "flue.sandbox.plugin"


async def test_makers_build_working_factories(tmp_path: Path) -> None:
    kinds = sandbox_kinds(tmp_path)
    virtual = await kinds["virtual"]({}).create_session_env(SandboxRequest(id="v"))
    assert (await virtual.exec("echo virtual")).stdout == "virtual\n"
    local = await kinds["local"]({"env": {"WHO": "host"}}).create_session_env(SandboxRequest(id="l", cwd=str(tmp_path)))
    assert (await local.exec("echo $WHO")).stdout == "host\n"


def test_makers_reject_bad_options(tmp_path: Path) -> None:
    kinds = sandbox_kinds(tmp_path)
    with pytest.raises(SandboxOptionsError, match="colour: unknown option"):
        kinds["virtual"]({"colour": "blue"})
    with pytest.raises(SandboxOptionsError, match="timeout"):
        kinds["local"]({"timeout": -1})


def test_the_plugin_does_not_import_bashkit_for_flue_info() -> None:
    import subprocess
    import sys

    code = "import sys, flue.sandbox.plugin; print('bashkit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
