"""`flue add` and `flue update` as a user runs them, and the shape of every built-in guide."""

from __future__ import annotations

import ast
import re

import pytest
from conftest import run_flue

from flue.blueprints import KINDS, Blueprint, builtin_blueprints, check_blueprint, code_blocks, load_catalog

NAMED = [b for b in builtin_blueprints() if not b.generic]
REQUIRED = {
    "sandbox/daytona", "sandbox/e2b", "sandbox/modal", "sandbox/docker", "channel/slack", "channel/github",
    "channel/discord", "database/postgres", "database/mysql", "database/redis", "tooling/opentelemetry",
    "tooling/sentry",
}


@pytest.mark.parametrize("bp", builtin_blueprints(), ids=lambda b: b.slug)
def test_every_guide_is_well_formed_and_its_python_is_complete(bp: Blueprint) -> None:
    assert check_blueprint(bp) == []
    for block in code_blocks(bp.markdown):
        if block.language == "python":
            ast.parse(block.code, filename=block.title or "?")  # complete modules, not fragments
            assert block.code.startswith(f"# flue-blueprint: {bp.slug}@{bp.version}\n"), block.title


def test_the_catalog_has_the_required_guides_and_a_generic_one_per_kind() -> None:
    catalog = load_catalog()
    assert REQUIRED <= set(catalog.named)
    assert set(catalog.generic) == set(KINDS)


def test_flue_add_lists_blueprints_by_kind_with_descriptions() -> None:
    res = run_flue("add")
    assert res.returncode == 0, res.stderr
    for slug in REQUIRED:
        kind, name = slug.split("/")
        bp = load_catalog().named[slug]
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(bp.description)}$", res.stdout, re.M), slug
    assert res.stdout.index("\nsandbox\n") < res.stdout.index("\nchannel\n") < res.stdout.index("\ntooling\n")
    assert "flue add sandbox <url>" in res.stdout


def test_flue_add_prints_the_guide_when_piped_or_with_print() -> None:
    guide = load_catalog().named["channel/slack"].render()
    for args in (["add", "channel", "slack", "--print"], ["add", "channel", "slack"], ["add", "channel", "SLACK"],
                 ["add", "channel", "slack-events"]):
        res = run_flue(*args)  # stdout is a pipe here
        assert res.returncode == 0 and res.stdout == guide, args


def test_flue_add_with_a_url_prints_the_generic_guide_naming_it() -> None:
    res = run_flue("add", "sandbox", "https://example.com/docs")
    assert res.returncode == 0
    assert res.stdout.startswith("# Build a Flue sandbox connector")
    assert "\nhttps://example.com/docs\n" in res.stdout and "{{URL}}" not in res.stdout


def test_flue_add_in_a_terminal_prints_a_recipe(tmp_path) -> None:
    from flue.cli.add import recipe

    text = recipe(["flue", "add", "sandbox", "https://e2b.dev/docs?x=1&y=2"], "title")
    assert "  flue add sandbox 'https://e2b.dev/docs?x=1&y=2' --print | claude\n" in text
    assert "--print | codex" in text


def test_flue_add_errors() -> None:
    res = run_flue("add", "queue", "kafka")
    assert res.returncode == 1 and 'Unknown blueprint kind "queue". Known kinds: sandbox, channel, database, tooling' in res.stderr
    res = run_flue("add", "channel", "postgres")  # a name under the wrong kind is not found
    assert res.returncode == 1 and 'Blueprint "postgres" not found for kind "channel".' in res.stderr
    assert "  slack " in res.stderr and "flue add channel <url>" in res.stderr
    res = run_flue("add", "channel")
    assert res.returncode == 1 and "Missing blueprint name or URL." in res.stderr


def test_project_plugins_add_blueprints(write_tree) -> None:
    root = write_tree({"plugins/guides.py": '''
from flue import hookimpl
from flue.blueprints import Blueprint

@hookimpl
def flue_blueprints():
    return [Blueprint(kind="tooling", name="acme", description="Acme metrics", version=1,
                      markdown="# Acme\\n\\nUse the Acme SDK.\\n")]
'''})
    res = run_flue("add", "--root", str(root))
    assert re.search(r"^  acme\s+Acme metrics  \(guides\)$", res.stdout, re.M), res.stdout
    res = run_flue("add", "tooling", "acme", "--root", str(root))
    assert res.stdout == "# Acme\n\nUse the Acme SDK.\n"


def test_flue_update_prints_the_steps_between_the_marked_version_and_the_guide(write_tree) -> None:
    bp = load_catalog().named["channel/slack"]
    assert bp.version == 2
    root = write_tree({
        "plugins/slack_channel.py": "# flue-blueprint: channel/slack@1\nOLD = True\n",
        "tests/test_slack_channel.py": "# flue-blueprint: channel/slack@2\n",
        ".venv/lib/copy.py": "# flue-blueprint: channel/slack@1\n",  # never scanned
    })
    res = run_flue("update", "channel", "slack", "--root", str(root))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert out.startswith("# Update channel/slack to version 2\n")
    assert "- `plugins/slack_channel.py` (line 1): version 1, behind" in out
    assert "- `tests/test_slack_channel.py` (line 1): version 2, current" in out
    assert ".venv" not in out
    assert "## Version 2 — " in out and "dispatch_id=f\"slack-{payload['event_id']}\"" in out
    assert "## Version 1" not in out  # only the steps after the oldest marked version
    assert "`# flue-blueprint: channel/slack@2`" in out


def test_flue_update_says_when_everything_is_current_and_fails_without_markers(write_tree, tmp_path) -> None:
    root = write_tree({"plugins/slack_channel.py": "# flue-blueprint: channel/slack@2\n"})
    res = run_flue("update", "channel", "slack", "--root", str(root))
    assert res.returncode == 0 and "channel/slack is up to date: plugins/slack_channel.py at version 2." in res.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run_flue("update", "channel", "slack", "--root", str(empty))
    assert res.returncode == 1 and "no file under" in res.stderr and "flue add channel slack" in res.stderr
    res = run_flue("update", "channel", "slack", "--root", str(tmp_path / "missing"))
    assert res.returncode == 1 and "is not a directory" in res.stderr
    res = run_flue("update", "sandbox", "https://example.com")
    assert res.returncode == 1 and "named blueprints" in res.stderr
    res = run_flue("update", "channel")
    assert res.returncode == 1 and "Missing blueprint kind and name." in res.stderr
