"""The virtual (bashkit) sandbox: fresh filesystems, seeding, snapshots, limits, options."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from flue.sandbox.base import SandboxRequest
from flue.sandbox.options import SandboxOptionsError
from flue.sandbox.output import TailBuffer
from flue.sandbox.virtual import VirtualSandboxEnv, make_virtual_factory

FIXTURES = Path(__file__).parent / "fixtures" / "sandbox"


async def new_env(options: dict | None = None, **request) -> VirtualSandboxEnv:
    factory = make_virtual_factory(options or {}, source_root=FIXTURES)
    return await factory.create_session_env(SandboxRequest(id="t", **request))


async def test_default_cwd_is_workspace_and_starts_fast() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    env = await new_env()
    r = await env.exec("pwd")
    assert r.stdout == "/workspace\n"
    assert loop.time() - start < 1.0  # in practice a few milliseconds


async def test_each_create_gets_a_fresh_filesystem() -> None:
    factory = make_virtual_factory({})
    one = await factory.create_session_env(SandboxRequest(id="a"))
    two = await factory.create_session_env(SandboxRequest(id="b"))
    await one.write_file("only-in-one.txt", "x")
    assert not await two.exists("only-in-one.txt")


async def test_workspace_folder_and_files_seed_the_cwd() -> None:
    env = await new_env({"workspace": "workspace"}, files={"override.txt": "from files:", "extra/e.md": "e"})
    assert await env.read_file("notes/deploy.md") == (FIXTURES / "workspace/notes/deploy.md").read_text()
    assert await env.exists("/workspace/AGENTS.md")
    assert await env.exists("/workspace/.agents/skills/tidy/SKILL.md")  # dotfiles are seeded too
    assert await env.read_file("override.txt") == "from files:"  # files: wins over the folder
    assert await env.read_file("extra/e.md") == "e"


async def test_workspace_resolves_against_the_source_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)  # without source_root=, the current directory's source root
    env = await make_virtual_factory({"workspace": "workspace"}).create_session_env(SandboxRequest(id="t"))
    assert await env.exists("notes/deploy.md")
    env = await make_virtual_factory({"workspace": str(FIXTURES / "workspace")}).create_session_env(
        SandboxRequest(id="t")
    )
    assert await env.exists("notes/deploy.md")


def test_missing_workspace_folder_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError, match="workspace folder 'nope' not found"):
        make_virtual_factory({"workspace": "nope"}, source_root=FIXTURES)


def test_bad_options_list_every_problem() -> None:
    with pytest.raises(SandboxOptionsError) as err:
        make_virtual_factory({"timout": 5, "timeout": "soon", "network": {"allow": []}})
    msg = str(err.value)
    assert "sandbox 'virtual'" in msg
    assert "timout: unknown option" in msg
    assert "timeout:" in msg
    assert "network.allow" in msg
    assert "known options:" in msg and "workspace" in msg


async def test_network_is_off_by_default() -> None:
    env = await new_env()
    r = await env.exec("curl -s https://example.com")
    assert r.exit_code != 0
    assert "network access not configured" in r.stderr


async def test_a_network_allow_list_is_accepted() -> None:
    env = await new_env({"network": {"allow": ["https://api.example.com/"]}})
    assert env.options.network is not None
    assert env.options.network.allow == ["https://api.example.com/"]
    # A URL outside the list is refused without any connection being attempted.
    r = await env.exec("curl -s https://other.example.org/")
    assert r.exit_code != 0
    assert "not in allowlist" in r.stderr


async def test_options_env_and_default_timeout_apply() -> None:
    env = await new_env({"env": {"TEAM": "core"}, "timeout": 0.3})
    assert (await env.exec("echo $TEAM")).stdout == "core\n"
    r = await env.exec("while true; do :; done")
    assert r.exit_code == 124 and "0.3s" in r.stderr


async def test_a_long_lived_env_outlives_bashkits_lifetime_command_cap() -> None:
    # bashkit stops an interpreter after 100,000 commands in its lifetime; a
    # session env must not die of it. 3 x 35,000 loop iterations > 100,000.
    env = await new_env()
    for _ in range(3):
        r = await env.exec("for i in $(seq 1 35000); do :; done; echo ok")
        assert (r.stdout, r.exit_code) == ("ok\n", 0), r.stderr


async def test_snapshot_restores_files_and_adds_only_missing_seeds() -> None:
    env = await new_env(files={"seed.txt": "original"})
    await env.write_file("seed.txt", "edited by the agent")
    await env.write_file("work/out.txt", "result")
    data = await env.snapshot()
    assert isinstance(data, bytes) and data
    restored = await new_env(snapshot=data, files={"seed.txt": "original", "new-seed.txt": "new"})
    assert await restored.read_file("seed.txt") == "edited by the agent"
    assert await restored.read_file("work/out.txt") == "result"
    assert await restored.read_file("new-seed.txt") == "new"
    await restored.write_file("work/out.txt", "changed")
    assert await env.read_file("work/out.txt") == "result"  # independent copies


async def test_a_bad_snapshot_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="snapshot could not be restored"):
        await new_env(snapshot=b"not a snapshot")


async def test_output_keeps_the_tail_when_huge() -> None:
    buf = TailBuffer(limit=10)
    for chunk in (b"0123456789", b"abcdefghij", b"KLMNOPQRST"):
        buf.add(chunk)
    assert buf.text() == "[flue: 20 bytes of earlier output dropped]\nKLMNOPQRST"
    env = await new_env()
    r = await env.exec("seq 1 100000 | tail -n 1")
    assert r.stdout == "100000\n"


async def test_a_symlink_is_reported() -> None:
    env = await new_env()
    await env.write_file("target.txt", "t")
    await env.exec("ln -s /workspace/target.txt link.txt")
    st = await env.stat("link.txt")
    assert st.is_symbolic_link and st.is_file
    assert not (await env.stat("target.txt")).is_symbolic_link


async def test_embedded_python_and_sqlite_are_opt_in() -> None:
    assert (await (await new_env()).exec("python3 -c 'print(1)'")).exit_code == 127
    env = await new_env({"python": True, "sqlite": True})
    r = await env.exec("python3 -c 'print(1 + 1)'; echo 'select 40 + 2;' | sqlite3")
    assert (r.stdout, r.exit_code) == ("2\n42\n", 0)


async def test_a_fresh_env_is_pristine_until_something_changes() -> None:
    """Nothing to restore or seed: the env answers for its cwd and runs commands as a made one
    would, and stays ``pristine`` (no snapshot worth storing) until a file changes."""
    from flue.sandbox.base import SandboxRequest
    from flue.sandbox.virtual import VirtualSandboxFactory

    factory = VirtualSandboxFactory()
    env = await factory.create_session_env(SandboxRequest(id="lazy"))
    assert env.pristine
    assert await env.exists("/workspace") and await env.exists("/") and not await env.exists("/workspace/AGENTS.md")
    result = await env.exec("echo hi && pwd && ls")
    assert (result.exit_code, result.stdout.split()) == (0, ["hi", "/workspace"])
    assert env.pristine
    assert (await env.exec("echo x > made.txt")).exit_code == 0
    assert not env.pristine
    assert await env.read_file("/workspace/made.txt") == "x\n"
    restored = await factory.create_session_env(SandboxRequest(id="lazy", snapshot=await env.snapshot()))
    assert await restored.read_file("made.txt") == "x\n" and not restored.pristine
    missing = await factory.create_session_env(SandboxRequest(id="lazy2"))
    assert (await missing.exec("cat nope.txt")).exit_code != 0
    try:
        await missing.exec("true", cwd="/elsewhere")
    except FileNotFoundError:
        pass
    else:
        raise AssertionError("a missing cwd must raise FileNotFoundError")
