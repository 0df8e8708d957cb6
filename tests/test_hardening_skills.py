"""Issue 17: secret files in skill folders are errors, so the project is not served.

The seeds: "Files likely to contain secrets or private keys, including .env*,
.dev.vars*, credential files, key files, .aws/, .ssh/, and .gnupg/, reject the
build rather than being deployed." Each pattern is listed here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_flue

from flue.authoring.skills import secret_reason
from flue.project import load_project

SKILL_MD = "---\nname: deploy\ndescription: Deploys things.\n---\nDeploy.\n"

SECRET_PATHS = [
    # directories, wherever they sit
    ".ssh/id_rsa", ".ssh/config", ".gnupg/pubring.kbx", ".aws/credentials", ".aws/config", "nested/.ssh/known_hosts",
    ".AWS/credentials",
    # .env* and .dev.vars*
    ".env", ".env.local", ".env.production", ".ENV", ".dev.vars", ".dev.vars.staging",
    # credential files
    "credentials", "credentials.json", ".netrc", "_netrc", ".npmrc", ".pypirc", ".pgpass", ".git-credentials",
    # private keys and key files
    "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519", "server.key", "tls/cert.pem", "bundle.p12", "store.PFX",
    "secret", "secrets", "secrets.yaml", "Secret.txt",
]
HARMLESS_PATHS = [
    "CHECKLIST.md", "notes/env.md", "environment.txt", "keys.md", "id_rsa.pub", "monkey.txt", "secretary.md",
    "scripts/deploy.sh", "ssh/notes.md", "aws.md", "docs/credentials-howto.md", "key.txt",
]


@pytest.mark.parametrize("path", SECRET_PATHS)
def test_each_secret_pattern_is_refused(path: str) -> None:
    assert secret_reason(path) is not None


@pytest.mark.parametrize("path", HARMLESS_PATHS)
def test_ordinary_files_are_packaged(path: str) -> None:
    assert secret_reason(path) is None


def _project(write_tree, extra: dict[str, str]) -> Path:
    return write_tree({
        "agents/helper.md": "---\ndescription: helps\nmodel: openai/gpt-4o-mini\nskills: [deploy]\n---\nHelp.\n",
        "skills/deploy/SKILL.md": SKILL_MD,
        "skills/deploy/CHECKLIST.md": "- check\n",
        **{f"skills/deploy/{rel}": text for rel, text in extra.items()},
    })


def test_every_secret_file_is_an_error_and_is_not_packaged(write_tree) -> None:
    root = _project(write_tree, {rel: "x\n" for rel in SECRET_PATHS})
    project = load_project(root)
    errors = [d for d in project.errors if d.code == "skill.secret-file"]
    assert sorted(d.file for d in errors) == sorted(f"skills/deploy/{rel}" for rel in SECRET_PATHS)
    assert all(d.hint and "skill folder" in d.hint for d in errors)
    assert project.skills["deploy"].files == ["CHECKLIST.md"]


def test_flue_info_exits_1_and_flue_start_refuses(write_tree) -> None:
    root = _project(write_tree, {".ssh/id_rsa": "-----BEGIN KEY-----\n", ".aws/credentials": "[default]\n",
                                 ".env": "TOKEN=x\n"})
    info = run_flue("info", "--json", "--root", str(root))
    assert info.returncode == 1, info.stderr
    diagnostics = json.loads(info.stdout)["diagnostics"]
    secret = [d for d in diagnostics if d["code"] == "skill.secret-file"]
    assert sorted(d["file"] for d in secret) == [
        "skills/deploy/.aws/credentials", "skills/deploy/.env", "skills/deploy/.ssh/id_rsa"]
    assert all(d["severity"] == "error" for d in secret)
    start = run_flue("start", "--root", str(root), "--port", "0", timeout=60)
    assert start.returncode == 1
    assert "skills/deploy/.ssh/id_rsa" in start.stderr and "Traceback" not in start.stderr
