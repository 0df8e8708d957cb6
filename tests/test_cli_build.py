"""`flue build` as a user runs it: diagnostics first, then an artifact that installs in a
fresh virtualenv from its pinned requirements and serves a prompt with `flue start`.

No network: the build, the install and the server run with the package index and every
HTTP proxy on a loopback port that counts and drops connections (:class:`offline_pip.Tripwire`),
and the install reads only a wheelhouse re-packed from this environment
(:func:`offline_pip.wheelhouse`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path

import pytest
from conftest import REPO, run_flue
from offline_pip import Tripwire, wheelhouse
from packaging.utils import canonicalize_name

from flue.testing.server_process import free_port

EXAMPLE = ["flue.yaml", "agents", "workflows", "skills", "sandbox"]


def example_project(root: Path) -> Path:
    for rel in EXAMPLE:
        src, dst = REPO / rel, root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src, dst) if src.is_dir() else shutil.copy2(src, dst)
    return root


def test_build_runs_the_diagnostics_and_refuses_broken_or_empty_projects(write_tree, tmp_path) -> None:
    broken = write_tree({"agents/a.md": "---\ndescripton: typo\n---\nHi\n"}, tmp_path / "broken")
    res = run_flue("build", "--root", str(broken))
    assert res.returncode == 1
    assert "descripton" in res.stderr and "Build failed: the project has 1 error(s)" in res.stderr
    assert not (broken / "dist").exists()

    empty = write_tree({"flue.yaml": "port: 3000\n", "skills/x/SKILL.md": "---\nname: x\ndescription: d\n---\nb\n"},
                       tmp_path / "empty")
    res = run_flue("build", "--root", str(empty))
    assert res.returncode == 1 and "no agent or workflow found" in res.stderr

    ok = write_tree({"agents/a.md": "---\ndescription: fine\n---\nHi\n"}, tmp_path / "ok")
    res = run_flue("build", "--root", str(ok), "--output", str(ok))
    assert res.returncode == 1 and "is the project" in res.stderr
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    res = run_flue("build", "--root", str(ok), "--output", str(tmp_path / "taken"))
    assert res.returncode == 1 and "not a previous flue build" in res.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.fixture
def tripwire():
    wire = Tripwire()
    yield wire
    wire.close()


@pytest.mark.slow
def test_the_example_project_builds_installs_in_a_fresh_venv_and_serves(tmp_path: Path, tripwire: Tripwire) -> None:
    root = example_project(tmp_path / "project")
    (root / ".env").write_text("FLUE_BUILD_TEST_SECRET=do-not-ship\n")
    # (a secret inside a skill folder is an error that stops the build: tests/test_hardening_skills.py)
    (root / "sandbox" / "support" / "credentials.json").write_text('{"token": "do-not-ship"}')
    (root / "sandbox" / "support" / "deploy.pem").write_text("-----BEGIN do-not-ship")
    (root / "notes").mkdir()
    (root / "notes" / "todo.txt").write_text("not part of the project")
    dist = tmp_path / "dist"
    offline = tripwire.env()  # flue build's own wheel builds (Flue, the local plugins) must not need the index
    res = subprocess.run([sys.executable, "-m", "flue", "build", "--root", str(root), "--output", str(dist)],
                         cwd=REPO, env=offline, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"done built {dist}" in res.stderr
    assert tripwire.hits == 0, "flue build tried the package index"

    shipped = {p.relative_to(dist).as_posix() for p in dist.rglob("*") if p.is_file()}
    assert {"flue.yaml", "agents/assistant.md", "workflows/hello.py", "workflows/triage.yaml",
            "skills/greet/SKILL.md", "skills/review/CHECKLIST.md",
            "sandbox/support/articles/billing-and-invoices.md", "Dockerfile", "requirements.txt",
            "flue-build.json"} <= shipped
    assert not any("do-not-ship" in (dist / p).read_text(errors="ignore") for p in shipped if not p.endswith(".whl"))
    assert ".env" not in shipped and "notes/todo.txt" not in shipped
    manifest = json.loads((dist / "flue-build.json").read_text())
    assert {s["path"] for s in manifest["skipped"]} == {"sandbox/support/credentials.json", "sandbox/support/deploy.pem"}
    assert {a["name"] for a in manifest["agents"]} == {"assistant", "researcher", "reviewer", "support"}
    assert {w["name"] for w in manifest["workflows"]} == {"hello", "triage"}
    assert next(f for f in manifest["files"] if f["path"] == "agents/assistant.md")["size"] == \
        (root / "agents/assistant.md").stat().st_size
    requirements = (dist / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("./wheels/flue-") and line.endswith(".whl") for line in requirements)
    assert any(line.startswith("aiohttp==") for line in requirements) and any(
        line.startswith("litellm==") for line in requirements)
    dockerfile = (dist / "Dockerfile").read_text()
    assert f"FROM python:{sys.version_info.major}.{sys.version_info.minor}-slim" in dockerfile
    assert 'CMD ["flue", "start", "--root", "/app"]' in dockerfile and "COPY wheels/ ./wheels/" in dockerfile

    # a fresh virtualenv gets the artifact's requirements and nothing else: the wheelhouse holds exactly
    # the pinned versions (each checked against what is installed here), pip may not use an index
    pinned = wheelhouse(dist / "requirements.txt", tmp_path / "wheelhouse")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # this pip installs into it (--python): no ensurepip to wait for
    python = env_dir / "bin" / "python"
    pip = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile",
                          "--find-links", str(tmp_path / "wheelhouse"), "-r", "requirements.txt"],
                         cwd=dist, env=tripwire.env(PIP_NO_INDEX="1"), capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-3000:]
    listed = subprocess.run([str(python), "-c", "import importlib.metadata as m, json; "
                             "print(json.dumps([[d.metadata['Name'], d.version] for d in m.distributions()]))"],
                            capture_output=True, text=True, check=True)
    bundled = {canonicalize_name(w.split("-")[0]): w.split("-")[1] for w in manifest["wheels"]}
    assert "flue" in bundled  # and every local plugin package installed here
    assert {canonicalize_name(n): v for n, v in json.loads(listed.stdout)} == {**pinned, **bundled}

    port = free_port()
    env = {k: v for k, v in offline.items() if k != "FLUE_MODEL"}
    server = subprocess.Popen([str(python), "-m", "flue", "start", "--host", "127.0.0.1", "--port", str(port)],
                              cwd=dist, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/openapi.json", timeout=5).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "flue start did not come up"
                time.sleep(0.2)
        request = urllib.request.Request(f"{base}/agents/assistant/u1?wait=result", method="POST",
                                         data=json.dumps({"message": "Write a greeting for Ada."}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as resp:
            assert resp.status == 200
            body = json.loads(resp.read())
        assert body["result"]["text"] == "Hello, Ada! It is a real pleasure to meet you."
    finally:
        server.terminate()
        server.wait(timeout=30)
    docs = subprocess.run([str(env_dir / "bin" / "flue"), "docs", "search", "lease"], env=offline,
                          capture_output=True, text=True, timeout=60)
    assert docs.stdout.startswith("persistence ")  # the docs ship inside the installed wheel
    assert tripwire.hits == 0, "something tried the package index or a proxy"


def test_build_of_a_dot_flue_source_root_copies_it_whole_but_not_its_state(write_tree, tmp_path) -> None:
    root = write_tree({
        "flue.yaml": "persistence: {kind: sqlite, path: .flue/state.db}\n",
        ".flue/agents/a.md": "---\ndescription: fine\nhttp: true\n---\nHi\n",
        ".flue/data/prices.csv": "a,1\n",
        ".flue/state.db": "runtime state",
        ".flue/state.db-wal": "runtime state",
        ".flue/.env": "SECRET=1\n",
    }, tmp_path / "p")
    from flue.build import build
    from flue.project import load_project

    project = load_project(root)
    assert project.source_root == root / ".flue" and not project.errors
    manifest = build(project, tmp_path / "out")
    shipped = {f["path"] for f in manifest["files"]}
    assert shipped == {"flue.yaml", ".flue/agents/a.md", ".flue/data/prices.csv"}
    assert {s["path"] for s in manifest["skipped"]} == {".flue/state.db", ".flue/state.db-wal", ".flue/.env"}
    assert (tmp_path / "out" / ".flue" / "data" / "prices.csv").read_text() == "a,1\n"


def test_a_local_package_builds_offline_and_one_whose_backend_is_missing_says_what_to_install(
        write_tree, tmp_path, tripwire, monkeypatch) -> None:
    from flue.build import BuildError, build_wheel

    offline = tripwire.env()
    for key in os.environ.keys() - offline.keys():
        monkeypatch.delenv(key)
    for key, value in offline.items():
        monkeypatch.setenv(key, value)
    setuptools_pkg = "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n" \
                     "[project]\nname = \"acme-tools\"\nversion = \"1.2.0\"\n"
    ok = write_tree({"pyproject.toml": setuptools_pkg, "acme_tools/__init__.py": "X = 1\n"}, tmp_path / "ok")
    (tmp_path / "wheels").mkdir()
    assert build_wheel("acme-tools", ok, tmp_path / "wheels") == "acme_tools-1.2.0-py3-none-any.whl"
    assert tripwire.hits == 0  # built with the setuptools installed here

    missing = write_tree({"pyproject.toml": "[build-system]\nrequires = [\"acme-no-such-backend>=1\"]\n"
                          "build-backend = \"acme_backend\"\n[project]\nname = \"acme-x\"\nversion = \"1\"\n"},
                         tmp_path / "missing")
    with pytest.raises(BuildError) as err:
        build_wheel("acme-x", missing, tmp_path / "wheels")
    assert "could not build a wheel of acme-x" in str(err.value) and "[build-system] requires" in str(err.value)
    assert "acme-no-such-backend" in str(err.value)
    assert tripwire.hits > 0  # only then did it ask the index (here: the tripwire) for the backend
