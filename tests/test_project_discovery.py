"""Issue 2: project discovery, diagnostics, plugins, flue info / flue init."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import REPO, run_flue

from flue.project import load_project, resolve_source_root


def info_json(root) -> tuple[dict, int]:
    proc = run_flue("info", "--json", "--root", str(root))
    return json.loads(proc.stdout), proc.returncode


def codes(doc: dict) -> set[tuple[str, str]]:
    return {(d["code"], d["file"]) for d in doc["diagnostics"] if d["severity"] == "error"}


def test_example_project_is_clean():
    doc, rc = info_json(REPO)
    assert rc == 0, doc["diagnostics"]
    assert not [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert len(doc["agents"]) >= 2 and len(doc["workflows"]) >= 1 and len(doc["skills"]) >= 1
    for key in ("root", "sourceRoot", "agents", "workflows", "skills", "channels", "plugins", "diagnostics"):
        assert key in doc
    assert all({"name", "file"} <= set(a) for a in doc["agents"] + doc["workflows"] + doc["skills"])


def test_deliberate_mistakes_are_error_diagnostics(write_tree, tmp_path):
    write_tree(
        {
            "agents/typo.md": "---\ndescription: x\nmodle: openai/gpt-4o\n---\nHello\n",
            "agents/twice.md": "---\ndescription: one\n---\nbody\n",
            "agents/twice.yaml": "description: two\ninstructions: body\n",
            "skills/Bad_Skill/SKILL.md": "---\nname: Bad_Skill\ndescription: nope\n---\nbody\n",
            "workflows/broken.yaml": "steps:\n  - prompt: [unclosed\n",
            "agents/badfront.md": "---\ndescription: fine\ntools: [read\n---\nbody\n",
            "agents/good.md": "---\ndescription: the one agent without mistakes\n---\nHello\n",
        }
    )
    doc, rc = info_json(tmp_path)
    assert rc == 1
    found = codes(doc)
    assert ("agent.unknown-key", "agents/typo.md") in found
    assert ("agent.duplicate-name", "agents/twice.yaml") in found
    assert ("skill.invalid-name", "skills/Bad_Skill/SKILL.md") in found
    assert ("yaml.syntax", "workflows/broken.yaml") in found
    assert ("yaml.syntax", "agents/badfront.md") in found
    unknown = next(d for d in doc["diagnostics"] if d["code"] == "agent.unknown-key")
    assert unknown["line"] == 3 and "modle" in unknown["message"] and unknown["hint"]
    front = next(d for d in doc["diagnostics"] if d["file"] == "agents/badfront.md")
    assert front["line"] in (3, 4) and front["severity"] == "error"
    # Only the clean agent survives; the broken ones are not half-registered.
    assert [a["name"] for a in doc["agents"]] == ["good"]
    assert doc["skills"] == [] and doc["workflows"] == []


def test_template_syntax_error_reports_its_line(write_tree, tmp_path):
    write_tree({"agents/a.md": "---\ndescription: x\n---\nline one\nhello {{ name }\n"})
    project = load_project(tmp_path)
    (diag,) = project.errors
    assert diag.code == "template.syntax" and diag.file == "agents/a.md" and diag.line == 5


def test_references_and_workflow_checks(write_tree, tmp_path):
    write_tree(
        {
            "agents/a.md": "---\nprofile: ghost\nskills: [missing]\nsubagents: [nobody]\ntools: [bash, nosuchtool]\n---\nx\n",
            "workflows/norun.py": "async def main(ctx):\n    return 1\n",
            "workflows/sync.py": "def run(ctx):\n    return 1\n",
            "workflows/steps.yaml": textwrap.dedent(
                """
                agent: a
                steps:
                  - id: one
                    prompt: "{{ steps.two.text }}"
                  - id: two
                    skill: absent
                return: "{{ steps.three.data }}"
                """
            ),
        }
    )
    project = load_project(tmp_path)
    got = {(d.code, d.message.split(",")[0]) for d in project.errors}
    found_codes = {c for c, _ in got}
    assert {
        "reference.missing-profile",
        "reference.missing-skill",
        "reference.missing-subagent",
        "reference.missing-tool",
        "workflow.missing-run",
        "workflow.run-not-async",
        "workflow.unknown-step",
    } <= found_codes
    unknown_steps = sorted(d.message for d in project.errors if d.code == "workflow.unknown-step")
    assert any("steps.two" in m for m in unknown_steps) and any("steps.three" in m for m in unknown_steps)


def test_source_root_precedence(tmp_path):
    assert resolve_source_root(tmp_path) == tmp_path
    (tmp_path / "src").mkdir()
    assert resolve_source_root(tmp_path) == tmp_path / "src"
    (tmp_path / ".flue").mkdir()
    assert resolve_source_root(tmp_path) == tmp_path / ".flue"


def test_agents_in_src_are_ignored_when_dot_flue_exists(write_tree, tmp_path):
    agent = "---\ndescription: x\n---\nx\n"
    write_tree({"agents/root.md": agent, "src/agents/src.md": agent, ".flue/agents/dot.md": agent})
    assert list(load_project(tmp_path).agents) == ["dot"]


def test_config_unknown_key_names_its_path(write_tree, tmp_path):
    write_tree({"flue.yaml": "port: 8080\nproviders:\n  local:\n    api: openai-completions\n    baseurl: http://x\n"})
    project = load_project(tmp_path)
    (diag,) = project.errors
    assert diag.code == "config.unknown-key" and "providers.local.baseurl" in diag.message and diag.file == "flue.yaml"


def test_entrypoint_and_project_plugins_listed(write_tree, tmp_path):
    site = tmp_path / "site"
    write_tree(
        {
            "site/flue_hello_plugin.py": "from flue import hookimpl\n\n@hookimpl\ndef flue_tools():\n    return []\n",
            "site/flue_hello_plugin-1.2.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: flue-hello-plugin\nVersion: 1.2.0\n",
            "site/flue_hello_plugin-1.2.0.dist-info/entry_points.txt": "[flue]\nhello = flue_hello_plugin\n",
            "proj/plugins/local_thing.py": "from flue import hookimpl\n\n@hookimpl\ndef flue_tools():\n    return []\n",
            "proj/plugins/broken.py": "raise RuntimeError('boom')\n",
            "proj/agents/a.md": "---\ndescription: a\n---\nhi\n",
        }
    )
    proc = run_flue("info", "--json", "--root", str(tmp_path / "proj"), env={"PYTHONPATH": str(site)})
    doc = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert plugins["hello"]["source"] == "entrypoint" and "flue-hello-plugin 1.2.0" in plugins["hello"]["origin"]
    assert plugins["local_thing"]["source"] == "project"
    broken = [d for d in doc["diagnostics"] if d["code"] == "plugin.load-failed"]
    assert broken and broken[0]["file"] == "plugins/broken.py" and "boom" in broken[0]["message"]
    assert proc.returncode == 1


def test_flue_init_project_is_accepted_and_not_overwritten(tmp_path):
    target = tmp_path / "new"
    assert run_flue("init", str(target)).returncode == 0
    for rel in ("flue.yaml", ".env.example", ".gitignore", "agents/assistant.md", "workflows/hello.py", "skills/greet/SKILL.md"):
        assert (target / rel).is_file(), rel
    doc, rc = info_json(target)
    assert rc == 0 and doc["diagnostics"] == []
    again = run_flue("init", str(target))
    assert again.returncode == 1 and "--force" in again.stderr
    assert run_flue("init", str(target), "--force").returncode == 0


def test_env_file_loaded_and_shell_wins(write_tree, tmp_path):
    write_tree({".env": "FLUE_TEST_A=from-file\nFLUE_TEST_B=from-file\n", "flue.yaml": "providers:\n  p:\n    api: openai-completions\n    base_url: http://127.0.0.1:1/v1\n    api_key_env: FLUE_TEST_A\n"})
    code = (
        "import os, sys; from flue.config import load_env_file; from pathlib import Path;"
        "load_env_file(Path(sys.argv[1])); print(os.environ['FLUE_TEST_A'], os.environ['FLUE_TEST_B'])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        env={**os.environ, "FLUE_TEST_B": "from-shell"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["from-file", "from-shell"]


def test_cli_does_not_import_litellm():
    code = (
        "import sys; from flue.cli import main\n"
        "for argv in (['--version'], ['--help'], ['info', '--json', '--root', sys.argv[1]]):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "print('LITELLM' if 'litellm' in sys.modules else 'CLEAN', file=sys.stderr)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().splitlines()[-1] == "CLEAN", proc.stderr


def test_unknown_command_exits_1():
    proc = run_flue("frobnicate")
    assert proc.returncode == 1 and "unknown command" in proc.stderr
    assert run_flue("--version").stdout.startswith("flue ")


def test_config_env_interpolation(write_tree, tmp_path, monkeypatch):
    write_tree({"flue.yaml": "model: ${FLUE_T_MODEL:-openai/gpt-4o}\nproviders:\n  p:\n    base_url: ${FLUE_T_URL}\n"})
    monkeypatch.setenv("FLUE_T_URL", "http://127.0.0.1:9/v1")
    project = load_project(tmp_path)
    assert project.config.model == "openai/gpt-4o"
    assert project.config.providers["p"].base_url == "http://127.0.0.1:9/v1"
    monkeypatch.delenv("FLUE_T_URL")
    (diag,) = load_project(tmp_path).errors
    assert diag.code == "config.missing-env" and "FLUE_T_URL" in diag.message and diag.line == 2


# -- skill naming rules ----------------------------------------------------------------

LONG_NAME = "a" * 65


def _skill(name: str, description: str | None = "Does one thing.") -> str:
    desc = f"description: {description}\n" if description is not None else ""
    return f"---\nname: {name}\n{desc}---\nbody\n"


@pytest.mark.parametrize(
    ("folder", "text", "code"),
    [
        ("Upper", _skill("Upper"), "skill.invalid-name"),
        ("two--hyphens", _skill("two--hyphens"), "skill.invalid-name"),
        ("-leading", _skill("-leading"), "skill.invalid-name"),
        ("trailing-", _skill("trailing-"), "skill.invalid-name"),
        ("under_score", _skill("under_score"), "skill.invalid-name"),
        (LONG_NAME, _skill(LONG_NAME), "skill.invalid-name"),
        ("folder", _skill("other-name"), "skill.name-mismatch"),
        ("nodesc", _skill("nodesc", None), "skill.missing-key"),
        ("longdesc", _skill("longdesc", "x" * 1025), "skill.wrong-type"),
    ],
)
def test_skill_rules_are_error_diagnostics(write_tree, tmp_path, folder, text, code):
    write_tree({f"skills/{folder}/SKILL.md": text})
    project = load_project(tmp_path)
    (diag,) = project.errors
    assert (diag.code, diag.file) == (code, f"skills/{folder}/SKILL.md"), diag
    assert diag.line is not None and diag.hint


def test_skill_names_at_the_limits_are_accepted(write_tree, tmp_path):
    name = "a1-" * 20 + "abcd"  # 64 characters, digits and single hyphens
    assert len(name) == 64
    write_tree({f"skills/{name}/SKILL.md": _skill(name, "y" * 1024), "skills/x/SKILL.md": _skill("x")})
    project = load_project(tmp_path)
    assert project.diagnostics == []
    assert sorted(project.skills) == sorted([name, "x"])


# -- discovery details -------------------------------------------------------------------


def test_python_workflows_are_found_without_importing_them(write_tree, tmp_path):
    marker = tmp_path / "IMPORTED"
    write_tree(
        {
            "workflows/heavy.py": (
                '"""Uses heavy things."""\n'
                f"open({str(marker)!r}, 'w').write('imported')\n"
                "import module_that_is_not_installed_anywhere\n\n"
                "http = True\n\n"
                "async def run(ctx):\n    return 1\n"
            ),
        }
    )
    proc = run_flue("info", "--json", "--root", str(tmp_path))
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0, doc["diagnostics"]
    assert doc["workflows"] == [
        {"name": "heavy", "file": "workflows/heavy.py", "kind": "python", "description": "Uses heavy things.", "http": True}
    ]
    assert not marker.exists()


def test_channels_are_discovered_with_their_kind(write_tree, tmp_path):
    write_tree(
        {
            "channels/support-inbox.yaml": "kind: carrier-pigeon\nsecret_env: HOOK_SECRET\n",
            "channels/nokind.yaml": "secret_env: X\n",
        }
    )
    doc, rc = info_json(tmp_path)
    assert doc["channels"] == [
        {"name": "support-inbox", "file": "channels/support-inbox.yaml", "kind": "carrier-pigeon", "source": "yaml",
         "routes": [], "rules": []}
    ]
    assert ("channel.missing-kind", "channels/nokind.yaml") in codes(doc)
    assert rc == 1
    # Warnings alone (no plugin provides 'carrier-pigeon') are shown but do not fail flue info.
    (tmp_path / "channels/nokind.yaml").unlink()
    doc, rc = info_json(tmp_path)
    assert rc == 0
    assert [(d["severity"], d["code"], d["line"]) for d in doc["diagnostics"]] == [("warning", "channel.unknown-kind", 1)]


def test_unknown_sandbox_kind_in_frontmatter_is_a_diagnostic(write_tree, tmp_path):
    write_tree(
        {
            "agents/boxed.md": "---\nsandbox: {kind: firecracker, size: big}\n---\nx\n",
            "agents/local.md": "---\nsandbox: local\n---\nx\n",
        }
    )
    project = load_project(tmp_path)
    (diag,) = project.errors
    assert (diag.code, diag.file) == ("reference.missing-sandbox", "agents/boxed.md")
    assert "firecracker" in diag.message and "local, virtual" in (diag.hint or "")


def test_a_plugin_tool_named_like_a_builtin_is_an_error_naming_the_plugin(write_tree, tmp_path):
    write_tree(
        {
            "plugins/clash.py": (
                "from flue import hookimpl, tool\n\n@hookimpl\ndef flue_tools():\n"
                "    @tool\n    async def grep(pattern: str) -> str:\n        'not the real grep'\n        return ''\n"
                "    return [grep]\n"
            )
        }
    )
    (diag,) = load_project(tmp_path).errors
    assert (diag.code, diag.file) == ("tool.builtin-collision", "plugins/clash.py")
    assert "'grep'" in diag.message


# -- the CLI as a person uses it --------------------------------------------------------


def test_flue_info_env_flag_loads_that_file_and_the_shell_still_wins(write_tree, tmp_path):
    write_tree(
        {
            "flue.yaml": "model: ${FLUE_T_ENVMODEL}\n",
            ".env": "FLUE_T_ENVMODEL=openai/from-dotenv\n",
            "other.env": "FLUE_T_ENVMODEL=openai/from-other\n",
            "agents/a.md": "---\ndescription: x\n---\nhi\n",
        }
    )
    env = {k: v for k, v in os.environ.items() if k != "FLUE_T_ENVMODEL"}

    def model_of(*args: str, extra: dict[str, str] | None = None) -> tuple[str | None, int]:
        proc = subprocess.run(
            [sys.executable, "-m", "flue", "info", "--json", "--root", str(tmp_path), *args],
            env={**env, **(extra or {})}, capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )
        if proc.returncode != 0 and not proc.stdout:
            return proc.stderr, proc.returncode
        return json.loads(proc.stdout)["agents"][0]["model"], proc.returncode

    assert model_of() == ("openai/from-dotenv", 0)
    assert model_of("--env", str(tmp_path / "other.env")) == ("openai/from-other", 0)
    assert model_of("--env", "other.env", extra={"FLUE_T_ENVMODEL": "openai/from-shell"}) == ("openai/from-shell", 0)
    message, rc = model_of("--env", "missing.env")
    assert rc == 1 and "--env file not found" in message


def test_flue_info_readable_report_lists_the_project_and_its_problems(write_tree, tmp_path):
    write_tree({"agents/helper.md": "---\ndescription: helps people\n---\nhi\n", "skills/s/SKILL.md": _skill("s")})
    clean = run_flue("info", "--root", str(tmp_path), env={"COLUMNS": "200"})
    assert clean.returncode == 0
    for text in ("helper", "helps people", "agents/helper.md", "skills/s/SKILL.md", "no diagnostics"):
        assert text in clean.stdout, text

    write_tree({"agents/typo.md": "---\ndescripton: x\n---\nhi\n"})
    broken = run_flue("info", "--root", str(tmp_path), env={"COLUMNS": "200"})
    assert broken.returncode == 1
    assert "agents/typo.md:2" in broken.stdout and "agent.unknown-key" in broken.stdout
    assert "descripton" in broken.stdout and "hint:" in broken.stdout


def test_scaffold_ships_no_dot_files_and_init_restores_their_names(tmp_path):
    """Package-data globs skip dot files; a wheel install must still get .gitignore and .env.example."""
    from flue.cli.init_cmd import scaffold_files

    packaged = REPO / "flue" / "scaffold" / "project"
    dotted = [p for p in packaged.rglob("*") if p.name.startswith(".") and p.name != "__pycache__"]
    assert dotted == [], "dot files in flue/scaffold are dropped from wheels; name them dot-<name>"
    assert {".gitignore", ".env.example"} <= set(scaffold_files())

    assert run_flue("init", cwd=tmp_path).returncode == 0  # DIR defaults to the current directory
    assert (tmp_path / ".env.example").read_text().startswith("#")
    assert ".env" in (tmp_path / ".gitignore").read_text().split()
    assert not (tmp_path / "dot-gitignore").exists()
    doc, rc = info_json(tmp_path)
    assert rc == 0 and doc["diagnostics"] == []
    assert [a["name"] for a in doc["agents"]] and [w["name"] for w in doc["workflows"]] == ["hello"]


# -- a plugin shipped as a real installed distribution -----------------------------------

PLUGIN_MODULE = '''"""A third-party Flue plugin."""
from flue import hookimpl, tool


@hookimpl
def flue_tools():
    @tool
    async def shout(text: str) -> str:
        "Upper-case some text."
        return text.upper()

    return [shout]
'''


def build_wheel(out_dir, name: str = "flue_shout", version: str = "0.3.0") -> str:
    """A minimal, valid wheel (PEP 427) with an entry point in the group ``flue``."""
    import base64
    import hashlib
    import zipfile

    dist_info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": PLUGIN_MODULE,
        f"{name}_broken.py": "raise ImportError('flue_shout_broken needs a missing library')\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: flue-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{dist_info}/entry_points.txt": f"[flue]\nshout = {name}\nkaput = {name}_broken\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = out_dir / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return str(wheel)


def test_a_pip_installed_distribution_is_a_plugin_through_its_entry_point(write_tree, tmp_path):
    site = tmp_path / "site"
    wheel = build_wheel(tmp_path)
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--target", str(site), wheel],
        capture_output=True, text=True, timeout=120,
    )
    assert install.returncode == 0, install.stderr
    write_tree(
        {
            "proj/plugins/local_tools.py": (
                "from flue import hookimpl, tool\n\n@hookimpl\ndef flue_tools():\n"
                "    @tool\n    async def whisper(text: str) -> str:\n        'Lower-case text.'\n"
                "        return text.lower()\n    return [whisper]\n"
            ),
            # Both plugins' tools are usable by name: no reference.missing-tool diagnostic.
            "proj/agents/loud.md": "---\ndescription: x\ntools: [shout, whisper, read]\n---\nhi\n",
        }
    )
    root = str(tmp_path / "proj")
    env = {"PYTHONPATH": str(site)}

    proc = run_flue("info", "--json", "--root", root, env=env)
    doc = json.loads(proc.stdout)
    plugins = {p["name"]: p for p in doc["plugins"]}
    assert plugins["shout"] == {"name": "shout", "source": "entrypoint", "origin": "flue-shout 0.3.0", "hooks": ["flue_tools"]}
    assert plugins["local_tools"]["source"] == "project" and plugins["local_tools"]["hooks"] == ["flue_tools"]
    # The distribution's second entry point fails to import: a diagnostic naming it, exit 1.
    (broken,) = [d for d in doc["diagnostics"] if d["severity"] == "error"]
    assert broken["code"] == "plugin.load-failed" and "'kaput'" in broken["message"]
    assert "needs a missing library" in broken["message"] and "kaput: false" in broken["hint"]
    assert "kaput" not in plugins and proc.returncode == 1

    # flue.yaml can switch the broken one off; the rest of the distribution keeps working.
    (tmp_path / "proj" / "flue.yaml").write_text("plugins:\n  kaput: false\n")
    proc = run_flue("info", "--json", "--root", root, env=env)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["diagnostics"] == []
    assert {"shout", "local_tools"} <= {p["name"] for p in doc["plugins"]}

    # The installed tool really runs inside an agent's tool loop.
    script = (
        "import asyncio, sys, flue\n"
        "from flue.testing import ScriptedModel, calls, reply, tool_call\n"
        "async def main():\n"
        "    model = ScriptedModel([calls(tool_call('shout', {'text': 'hi there'})), reply('done')])\n"
        "    harness = await flue.init('loud', project=flue.load_project(sys.argv[1]), model=model)\n"
        "    await (await harness.session()).prompt('shout')\n"
        "    print(model.requests[1].messages[-1]['content'])\n"
        "asyncio.run(main())\n"
    )
    ran = subprocess.run([sys.executable, "-c", script, root], env={**os.environ, **env}, capture_output=True,
                         text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "HI THERE"

    # Without the distribution on the path, the agent's tool reference is an error.
    proc = run_flue("info", "--json", "--root", root)
    assert ("reference.missing-tool", "agents/loud.md") in codes(json.loads(proc.stdout))


def test_persistence_options_are_validated_by_flue_info(write_tree, tmp_path):
    write_tree({"flue.yaml": "port: 8080\npersistence:\n  kind: sqlite\n  pth: state.db\n"})
    (diag,) = load_project(tmp_path).errors
    assert (diag.code, diag.file, diag.line) == ("config.unknown-key", "flue.yaml", 2)
    assert "persistence.pth" in diag.message

    # No installed plugin provides the kind (the postgres plugin is switched off): an error before startup.
    write_tree({"flue.yaml": "persistence:\n  kind: mongo\nplugins:\n  postgres: false\n"})
    (diag,) = load_project(tmp_path).errors
    assert diag.code == "config.unknown-persistence" and "'mongo'" in diag.message

    write_tree({"flue.yaml": "persistence: sqlite\n"})
    assert load_project(tmp_path).diagnostics == []


def test_plugin_persistence_kinds_declare_their_options_and_typos_get_suggestions(write_tree, tmp_path):
    # flue-postgres declares its kind and options model (flue_persistence_kinds): a typo is an error at load
    write_tree({"flue.yaml": "persistence:\n  kind: postgres\n  pool_sise: 3\n"})
    (diag,) = load_project(tmp_path).errors
    assert (diag.code, diag.file, diag.line) == ("config.unknown-key", "flue.yaml", 1)
    assert "persistence.pool_sise" in diag.message and "pool_size" in (diag.hint or "")

    # every installed persistence plugin declares its kinds, so an unknown kind is known to be unknown
    write_tree({"flue.yaml": "persistence:\n  kind: postgress\n"})
    (diag,) = load_project(tmp_path).errors
    assert diag.code == "config.unknown-persistence" and "did you mean 'postgres'" in (diag.hint or "")

    write_tree({"flue.yaml": "persistence:\n  kind: postgres\n  url_env: MY_DB\n"})
    assert load_project(tmp_path).errors == []


def test_state_never_lands_in_a_source_root(write_tree, tmp_path):
    """A database under .flue/ would create .flue/ and hide every agent: it is an error that says
    where to put it instead; a .flue/ that holds nothing while agents/ does is a warning."""
    write_tree({"flue.yaml": "persistence: {kind: sqlite, path: .flue/state.db}\n",
                "agents/a.md": "---\ndescription: a\n---\nHi.\n"})
    doc, rc = info_json(tmp_path)
    (err,) = [d for d in doc["diagnostics"] if d["code"] == "config.state-in-source-root"]
    assert rc == 1 and err["file"] == "flue.yaml" and ".flue-state/" in err["hint"]

    (tmp_path / "flue.yaml").write_text("persistence: {kind: sqlite, path: .flue-state/state.db}\n")
    (tmp_path / ".flue").mkdir()  # left behind by an earlier run
    doc, rc = info_json(tmp_path)
    (warning,) = [d for d in doc["diagnostics"] if d["code"] == "project.empty-source-root"]
    assert rc == 0 and warning["severity"] == "warning" and "agents/" in warning["message"]
    assert "remove .flue/" in warning["hint"]
