"""Issue 2: project discovery, diagnostics, plugins, flue info / flue init."""

from __future__ import annotations

import json
import textwrap

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
        }
    )
    doc, rc = info_json(tmp_path)
    assert rc == 1
    found = codes(doc)
    assert ("agent.unknown-key", "agents/typo.md") in found
    assert ("agent.duplicate-name", "agents/twice.yaml") in found
    assert ("skill.invalid-name", "skills/Bad_Skill/SKILL.md") in found
    assert ("yaml.syntax", "workflows/broken.yaml") in found
    unknown = next(d for d in doc["diagnostics"] if d["code"] == "agent.unknown-key")
    assert unknown["line"] == 3 and "modle" in unknown["message"] and unknown["hint"]


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
    write_tree({"agents/root.md": "x", "src/agents/src.md": "x", ".flue/agents/dot.md": "x"})
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
            "proj/agents/a.md": "hi\n",
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
    import os
    import subprocess
    import sys

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
    import subprocess
    import sys

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
