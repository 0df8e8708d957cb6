"""A newcomer's first hour: what ``flue info`` catches before a run, one diagnostic per typo,
errors that name the fix, and a ``flue init`` project that runs before any key is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flue.cli import main as flue_main

KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "FLUE_MODEL", "CHEF_TOKEN")


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch):
    for name in KEY_VARS:
        monkeypatch.delenv(name, raising=False)


def info(root: Path, capsys) -> tuple[int, list[dict]]:
    """``flue info --json`` in this process: its exit code and diagnostics."""
    code = flue_main(["info", "--json", "--root", str(root)])
    return code, json.loads(capsys.readouterr().out)["diagnostics"]


def only(diags: list[dict], code: str) -> dict:
    (found,) = [d for d in diags if d["code"] == code]
    return found


AGENT = "---\ndescription: Cooks\n{extra}---\nYou cook.\n"


def test_missing_api_key_is_a_warning_naming_the_env_var_and_env_file(write_tree, tmp_path, capsys):
    write_tree({"agents/chef.md": AGENT.format(extra="model: anthropic/claude-sonnet-4-6\n")})
    code, diags = info(tmp_path, capsys)
    d = only(diags, "model.missing-api-key")
    assert code == 0 and d["severity"] == "warning" and d["file"] == "agents/chef.md"
    assert "ANTHROPIC_API_KEY is not set" in d["message"] and "ANTHROPIC_API_KEY=... to .env" in d["hint"]


def test_missing_key_of_the_default_model_points_at_flue_yaml(write_tree, tmp_path, capsys, monkeypatch):
    write_tree({"flue.yaml": "model: openai/gpt-4.1\n", "agents/chef.md": AGENT.format(extra="")})
    code, diags = info(tmp_path, capsys)
    d = only(diags, "model.missing-api-key")
    assert code == 0 and d["file"] == "flue.yaml" and "OPENAI_API_KEY" in d["hint"]
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert not [d for d in info(tmp_path, capsys)[1] if d["code"] == "model.missing-api-key"]


def test_misspelt_provider_is_an_error_with_did_you_mean(write_tree, tmp_path, capsys):
    write_tree({"agents/chef.md": AGENT.format(extra="model: antropic/claude-sonnet-4-6\n")})
    code, diags = info(tmp_path, capsys)
    d = only(diags, "model.unknown-provider")
    assert code == 1 and d["severity"] == "error" and d["file"] == "agents/chef.md"
    assert d["hint"].startswith("did you mean 'anthropic/claude-sonnet-4-6'?") and "flue docs read providers" in d["hint"]


def test_unset_bearer_env_warns_that_every_request_gets_401(write_tree, tmp_path, capsys, monkeypatch):
    write_tree({"agents/chef.md": AGENT.format(extra="model: offline/rules\nhttp: {auth: {bearer_env: CHEF_TOKEN}}\n")})
    code, diags = info(tmp_path, capsys)
    d = only(diags, "auth.missing-token-env")
    assert code == 0 and "CHEF_TOKEN" in d["message"] and "401" in d["message"]
    assert "CHEF_TOKEN=" in d["hint"] and ".env" in d["hint"]
    monkeypatch.setenv("CHEF_TOKEN", "t0ken")
    assert not [d for d in info(tmp_path, capsys)[1] if d["code"] == "auth.missing-token-env"]


SKILL = "---\nname: greet\ndescription: Greets\n---\nGreet {{ name }} in {{ lang | default('English') }}.\n"


def test_yaml_skill_args_are_checked_against_the_skill(write_tree, tmp_path, capsys):
    write_tree({
        "agents/chef.md": AGENT.format(extra="model: offline/rules\nskills: [greet]\n"),
        "skills/greet/SKILL.md": SKILL,
        "workflows/typo.yaml": "agent: chef\nsteps:\n  - {skill: greet, args: {nmae: Ada}}\n",
        "workflows/extra.yaml": "agent: chef\nsteps:\n  - {skill: greet, args: {name: Ada, tone: warm}}\n",
        "workflows/fine.yaml": "agent: chef\nsteps:\n  - {skill: greet, args: {name: Ada}}\n",
    })
    code, diags = info(tmp_path, capsys)
    typo = [d for d in diags if d["file"] == "workflows/typo.yaml"]
    assert code == 1 and [d["code"] for d in typo] == ["workflow.missing-skill-arg"]  # one typo, one finding
    assert "'nmae' instead" in typo[0]["message"] and typo[0]["hint"].startswith("did you mean 'name'?")
    extra = only(diags, "workflow.unknown-skill-arg")
    assert extra["file"] == "workflows/extra.yaml" and extra["severity"] == "warning" and "'tone'" in extra["message"]
    assert "lang, name" in extra["hint"]
    assert not [d for d in diags if d["file"] == "workflows/fine.yaml"]


def test_template_reading_an_undeclared_payload_field_suggests_the_declared_one(write_tree, tmp_path, capsys):
    write_tree({
        "agents/chef.md": AGENT.format(extra="model: offline/rules\n"),
        "workflows/dinner.yaml": (
            "agent: chef\npayload:\n  type: object\n  properties:\n    guests: {type: array}\n"
            "steps:\n  - prompt: 'Plan dinner for {{ payload.guest }}'\n"
        ),
    })
    code, diags = info(tmp_path, capsys)
    d = only(diags, "workflow.unknown-payload-field")
    assert code == 0 and d["severity"] == "warning" and "payload.guest" in d["message"]
    assert d["hint"].startswith("did you mean payload.guests?")


def test_misspelt_or_unmarked_plugin_hooks_are_reported(write_tree, tmp_path, capsys):
    write_tree({
        "agents/chef.md": AGENT.format(extra="model: offline/rules\n"),
        "plugins/kitchen.py": (
            "from flue import hookimpl\n\n\n@hookimpl\ndef flue_tool():\n    return []\n\n\n"
            "def flue_tools():\n    return []\n"
        ),
    })
    code, diags = info(tmp_path, capsys)
    misspelt, unmarked = only(diags, "plugin.unknown-hook"), only(diags, "plugin.hook-not-marked")
    assert code == 0 and misspelt["file"] == "plugins/kitchen.py" and misspelt["line"] == 4
    assert misspelt["hint"].startswith("did you mean 'flue_tools'?") and "@hookimpl" in unmarked["hint"]


def test_a_frontmatter_typo_is_one_diagnostic_not_a_cascade(write_tree, tmp_path, capsys):
    write_tree({
        "agents/chef.md": AGENT.format(extra="model: offline/rules\nskils: [greet]\n"),
        "agents/host.md": AGENT.format(extra="model: offline/rules\nsubagents: [chef]\nprofile: chef\n"),
        "workflows/menu.yaml": "agent: chef\nsteps:\n  - prompt: a\n  - prompt: b\n  - {prompt: c, agent: chef}\n",
    })
    code, diags = info(tmp_path, capsys)
    assert code == 1 and len(diags) == 1, diags
    (d,) = diags
    assert d["code"] == "agent.unknown-key" and d["file"] == "agents/chef.md" and d["line"] == 4
    assert d["hint"].startswith("did you mean 'skills'?") and "flue docs read agents" in d["hint"]


def test_unknown_flue_yaml_key_and_missing_name_suggest_the_right_one(write_tree, tmp_path, capsys):
    write_tree({"flue.yaml": "modle: offline/rules\n", "agents/chef.md": AGENT.format(extra="")})
    code, diags = info(tmp_path, capsys)
    d = only(diags, "config.unknown-key")
    assert code == 1 and d["hint"].startswith("did you mean 'model'?") and "flue docs read getting-started" in d["hint"]
    write_tree({"flue.yaml": "model: offline/rules\n", "workflows/w.yaml": "agent: chf\nsteps:\n  - prompt: hi\n"})
    d = only(info(tmp_path, capsys)[1], "reference.missing-agent")
    assert d["hint"].startswith("did you mean 'chef'?")


def test_unclosed_frontmatter_is_reported_as_such(write_tree, tmp_path, capsys):
    write_tree({"agents/chef.md": "---\ndescription: Cooks\nskills: [greet]\n\nYou cook.\n"})
    code, diags = info(tmp_path, capsys)
    (d,) = diags
    assert code == 1 and d["code"] == "frontmatter.unclosed" and d["line"] == 1 and "'---'" in d["hint"]


def test_markdown_without_frontmatter_in_agents_is_a_warning_not_an_agent(write_tree, tmp_path, capsys):
    write_tree({"agents/chef.md": AGENT.format(extra="model: offline/rules\n"), "agents/notes.md": "# Notes\n\ntodo\n"})
    code = flue_main(["info", "--json", "--root", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and [a["name"] for a in doc["agents"]] == ["chef"]
    (d,) = doc["diagnostics"]
    assert d["code"] == "agent.no-frontmatter" and d["severity"] == "warning" and d["file"] == "agents/notes.md"


# -- real subprocesses: flue run and flue init -----------------------------------------------------


def flue(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in KEY_VARS}
    return subprocess.run([sys.executable, "-m", "flue", *args], cwd=cwd, env={**clean, **(env or {})},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("model", "env_var"), [("anthropic/claude-sonnet-4-6", "ANTHROPIC_API_KEY"),
                                                ("openai/gpt-4.1", "OPENAI_API_KEY")])
def test_missing_api_key_on_flue_run_is_one_line_naming_the_env_var(tmp_path, model, env_var):
    assert flue("init", "kitchen", cwd=tmp_path).returncode == 0
    project = tmp_path / "kitchen"
    config = project / "flue.yaml"
    config.write_text(config.read_text().replace("model: ${FLUE_MODEL:-offline/rules}", f"model: {model}"))
    proc = flue("run", "hello", cwd=project)
    assert proc.returncode == 1 and proc.stdout == ""
    naming = [line for line in proc.stderr.splitlines() if env_var in line]
    assert len(naming) == 1, proc.stderr
    assert f"model_not_configured: {env_var} is not set: add it to .env or the shell" in naming[0]
    assert f"'{model}'" in naming[0] and "Traceback" not in proc.stderr and "InternalServerError" not in proc.stderr


def test_flue_init_project_runs_offline_three_times_and_keeps_its_source_root(tmp_path):
    assert flue("init", "first", cwd=tmp_path).returncode == 0
    project = tmp_path / "first"
    for name in ("Ada", "Grace", "Linus"):
        proc = flue("run", "hello", "--payload", json.dumps({"name": name}), cwd=project)
        assert proc.returncode == 0, proc.stderr
        assert name in json.loads(proc.stdout)["greeting"]
    proc = flue("info", "--json", cwd=project)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["sourceRoot"] == str(project.resolve()) and doc["diagnostics"] == []
    assert {a["name"]: a["model"] for a in doc["agents"]} == {"assistant": "offline/rules"}
    assert [w["name"] for w in doc["workflows"]] == ["hello"]
    # FLUE_MODEL picks the model of an init project too (here: one whose key is unset)
    doc = json.loads(flue("info", "--json", cwd=project, env={"FLUE_MODEL": "openai/gpt-4.1"}).stdout)
    assert doc["agents"][0]["model"] == "openai/gpt-4.1"
    assert [d["code"] for d in doc["diagnostics"]] == ["model.missing-api-key"]


def test_flue_model_is_the_default_when_agent_and_flue_yaml_name_none(write_tree, tmp_path, capsys, monkeypatch):
    write_tree({"agents/chef.md": AGENT.format(extra=""), "agents/sous.md": AGENT.format(extra="model: offline/own\n")})
    monkeypatch.setenv("FLUE_MODEL", "offline/from-env")
    flue_main(["info", "--json", "--root", str(tmp_path)])
    models = {a["name"]: a["model"] for a in json.loads(capsys.readouterr().out)["agents"]}
    assert models == {"chef": "offline/from-env", "sous": "offline/own"}  # the agent's own wins
    write_tree({"flue.yaml": "model: offline/from-yaml\n"})
    flue_main(["info", "--json", "--root", str(tmp_path)])
    models = {a["name"]: a["model"] for a in json.loads(capsys.readouterr().out)["agents"]}
    assert models == {"chef": "offline/from-yaml", "sous": "offline/own"}  # flue.yaml over FLUE_MODEL


def test_misspelt_step_id_role_and_template_variable_get_suggestions(write_tree, tmp_path):
    from flue.project import load_project

    write_tree({
        "agents/chef.md": AGENT.format(extra="model: offline/rules\nroles: {critic: Be strict.}\n"),
        "workflows/menu.yaml": (
            "agent: chef\nsteps:\n  - {id: classify, prompt: hi}\n"
            "  - {prompt: '{{ steps.clasify.text }} {{ paylod }}', role: critc}\n"
        ),
    })
    hints = {d.code: d.hint for d in load_project(tmp_path).diagnostics}
    assert hints["workflow.unknown-step"].startswith("did you mean 'classify'?")
    assert hints["workflow.unknown-variable"].startswith("did you mean 'payload'?")
    assert hints["workflow.unknown-role"].startswith("did you mean 'critic'?")
