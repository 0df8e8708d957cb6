"""``flue build``: a deployable artifact for a project.

What goes in (``<output>``, default ``<root>/dist``):

- the project's files at their paths relative to the root: ``flue.yaml``; the
  whole source root when it is ``.flue/`` or ``src/``, else ``agents/``,
  ``workflows/``, ``skills/``, ``channels/``, ``plugins/*.py``, ``AGENTS.md``
  and ``.agents/``; every virtual sandbox ``workspace:`` folder an agent
  names; and the ``--include`` paths;
- ``requirements.txt``: every distribution the project needs (Flue with the
  extras it uses, the installed plugin distributions, what the project's
  Python files import), pinned to the installed version, with the
  dependencies' closure;
- ``wheels/``: wheels of the distributions no index has (installed from a
  local folder or file: Flue itself in a checkout, local plugin packages),
  referenced from ``requirements.txt`` as ``./wheels/<file>.whl`` (built with
  the build backend installed here, without the index; see :func:`build_wheel`);
- ``flue-build.json`` (the manifest), ``Dockerfile`` and ``.dockerignore``.

Never copied: ``.env`` and every file whose name the skill secret rules
reject (:func:`flue.authoring.skills.secret_reason`), the configured SQLite
state database, virtualenvs, VCS folders, caches and the output folder itself. The manifest lists what was
left out and why.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from flue.authoring.skills import secret_reason
from flue.project import Project
from flue.version import __version__

MANIFEST = "flue-build.json"
PROJECT_DIRS = ("agents", "workflows", "skills", "channels")
SKIP_DIRS = {".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".pytest_cache",
             ".mypy_cache", ".ruff_cache", ".tox", "dist", "build"}


class BuildError(Exception):
    """The project cannot be built as asked (the message says why and what to do)."""


@dataclass
class Artifact:
    output: Path
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    wheels: list[str] = field(default_factory=list)


def check_output(project: Project, output: Path) -> None:
    root, src = project.root, project.source_root
    if output in (root, src) or root.is_relative_to(output):
        raise BuildError(f"--output {output} is the project (or contains it); build into a folder of its own, "
                         "e.g. dist/")
    if output.exists() and any(output.iterdir()) and not (output / MANIFEST).is_file():
        raise BuildError(f"{output} is not empty and is not a previous flue build; choose another --output "
                         "or empty it")


def project_paths(project: Project, includes: list[str]) -> list[Path]:
    """The files and folders to copy (absolute), before secret and cache filtering."""
    root, src = project.root, project.source_root
    paths: list[Path] = []
    if project.config_file is not None:
        paths.append(project.config_file)
    if src != root:
        paths.append(src)
    else:
        paths += [src / d for d in PROJECT_DIRS if (src / d).is_dir()]
        plugin_dir = src / "plugins"
        if plugin_dir.is_dir():
            paths += sorted(p for p in plugin_dir.glob("*.py") if p.is_file())
        paths += [p for p in (src / "AGENTS.md", src / ".agents") if p.exists()]
    for agent in project.agents.values():
        spec = agent.sandbox
        workspace = (spec.model_extra or {}).get("workspace") if spec is not None and spec.kind == "virtual" else None
        if isinstance(workspace, str):
            folder = Path(workspace).expanduser()
            paths.append(folder if folder.is_absolute() else src / folder)
    for inc in includes:
        path = (root / inc).resolve()
        if not path.exists():
            raise BuildError(f"--include {inc}: {path} does not exist")
        if not path.is_relative_to(root):
            raise BuildError(f"--include {inc}: {path} is outside the project root {root}")
        paths.append(path)
    return paths


def _walk(path: Path, output: Path):
    if path.is_dir():
        if path == output or path.name in SKIP_DIRS or path.name.endswith(".egg-info"):
            return
        for child in sorted(path.iterdir()):
            yield from _walk(child, output)
    elif path.is_file() and path.suffix not in (".pyc", ".pyo"):
        yield path


def state_files(project: Project) -> set[Path]:
    """The configured SQLite database and its journals: runtime state, never part of a build."""
    path = project.config.persistence.options.get("path")
    if project.config.persistence.kind != "sqlite" or not isinstance(path, str) or path == ":memory:":
        return set()
    db = Path(path).expanduser()
    db = (db if db.is_absolute() else project.root / db).resolve()
    return {db, *(db.with_name(db.name + suffix) for suffix in ("-wal", "-shm", "-journal"))}


def copy_project(project: Project, artifact: Artifact, includes: list[str]) -> None:
    root, seen, state = project.root, set(), state_files(project)
    for top in project_paths(project, includes):
        for path in _walk(top.resolve(), artifact.output):
            rel = path.relative_to(root).as_posix()
            if rel in seen:
                continue
            seen.add(rel)
            reason = secret_reason(rel)
            if reason is not None:
                artifact.skipped.append({"path": rel, "reason": f"never packaged: {reason}"})
                continue
            if path in state:
                artifact.skipped.append({"path": rel, "reason": "the project's SQLite state (persistence.path)"})
                continue
            target = artifact.output / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
            data = path.read_bytes()
            artifact.files.append({"path": rel, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()})


# -- requirements ------------------------------------------------------------------------


def imported_modules(project: Project) -> set[str]:
    """Top-level modules imported by the project's Python files (plugins, workflows)."""
    names: set[str] = set()
    for entry in project_paths(project, []):
        for path in _walk(entry, project.root / "\0"):
            if path.suffix != ".py":
                continue
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names |= {a.name.split(".")[0] for a in node.names}
                elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names)


def root_distributions(project: Project) -> list[tuple[str, set[str]]]:
    """(distribution, extras) the project needs directly."""
    extras = {"mcp"} if any(a.mcp for a in project.agents.values()) else set()
    roots: list[tuple[str, set[str]]] = [("flue", extras)]
    loaded = {p.name for p in project.plugins if p.source == "entrypoint"}
    for ep in metadata.entry_points(group="flue"):
        if ep.name in loaded and ep.dist is not None:
            roots.append((ep.dist.name, set()))
    by_module = metadata.packages_distributions()
    for module in sorted(imported_modules(project)):
        for dist in by_module.get(module, []):
            roots.append((dist, set()))
    return roots


def closure(roots: list[tuple[str, set[str]]]) -> dict[str, metadata.Distribution]:
    """Every installed distribution reachable from ``roots`` (markers evaluated here)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, metadata.Distribution] = {}
    extras_seen: dict[str, set[str]] = {}
    stack = list(roots)
    while stack:
        name, extras = stack.pop()
        key = canonicalize_name(name)
        if key in found and extras <= extras_seen[key]:
            continue
        try:
            dist = found.get(key) or _find(name)
        except metadata.PackageNotFoundError:
            raise BuildError(f"the project needs '{name}', which is not installed here; install it and build "
                             "again") from None
        found[key] = dist
        extras_seen[key] = extras_seen.get(key, set()) | extras
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (extras | {""})):
                continue
            stack.append((req.name, set(req.extras)))
    return found


def _find(name: str) -> metadata.Distribution:
    """The installed distribution ``name``. A source checkout's ``*.egg-info`` on ``sys.path``
    (``python -m`` from the checkout) shadows the installed record; prefer the record that
    says where it was installed from."""
    candidates = list(metadata.distributions(name=name))
    if not candidates:
        raise metadata.PackageNotFoundError(name)
    return next((d for d in candidates if d.read_text("direct_url.json")), candidates[0])


def _direct_url(dist: metadata.Distribution) -> dict[str, Any] | None:
    text = dist.read_text("direct_url.json")
    return json.loads(text) if text else None


_NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "node_modules", "__pycache__", "*.egg-info",
                                     ".pytest_cache", ".ruff_cache", ".mypy_cache", ".flue-state")


def build_wheel(name: str, source: Path, wheels: Path) -> str:
    """Build a wheel of the local source folder of ``name`` into ``wheels``; return its file name.

    Offline first: with the build backend installed here (``--no-build-isolation``, pip
    checking it satisfies the folder's ``[build-system] requires``) and ``--no-index``, so a
    checkout of Flue or a local plugin builds with no package index. Only when this
    environment lacks that backend does pip build in an isolated environment, which
    installs the backend from the index.
    """
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="flue-build-") as scratch:
        # Build from a clean copy: setuptools reuses a source folder's build/lib, so a module deleted
        # since the last build would otherwise ship in the wheel (and the build litters the checkout).
        copy = Path(scratch) / source.name
        shutil.copytree(source, copy, ignore=_NOT_SOURCE)
        base = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                "--wheel-dir", str(wheels), str(copy)]
        for command in ([*base, "--no-index", "--no-build-isolation", "--check-build-dependencies"], base):
            before = set(wheels.glob("*.whl"))
            proc = subprocess.run(command, capture_output=True, text=True)
            made = sorted(set(wheels.glob("*.whl")) - before)
            if proc.returncode == 0 and made:
                return made[-1].name
            errors.append("\n".join(proc.stderr.strip().splitlines()[-12:]))
    raise BuildError(f"could not build a wheel of {name} from {source}. With this environment's build backend "
                     f"(install what its pyproject.toml [build-system] requires here to build without an index):\n"
                     f"{errors[0]}\nIn an isolated build environment, from the package index:\n{errors[1]}")


def pin(dist: metadata.Distribution, wheels: Path) -> tuple[str, str | None]:
    """(requirements line, bundled wheel file or None) for one distribution."""
    name, version = dist.metadata["Name"], dist.version
    direct = _direct_url(dist)
    if direct is None:
        return f"{name}=={version}", None
    url = direct.get("url", "")
    parsed = urlparse(url)
    if parsed.scheme != "file":
        return f"{name} @ {url}", None  # a VCS or remote URL: installable as it was
    source = Path(unquote(parsed.path))
    if "dir_info" in direct:
        made = build_wheel(name, source, wheels)
        return f"./wheels/{made}", made
    if source.suffix == ".whl" and source.is_file():
        shutil.copy2(source, wheels / source.name)
        return f"./wheels/{source.name}", source.name
    raise BuildError(f"{name} was installed from {url}, which is gone; reinstall it from an index or a wheel")


def write_requirements(project: Project, artifact: Artifact) -> None:
    wheels = artifact.output / "wheels"
    wheels.mkdir(exist_ok=True)
    for _key, dist in sorted(closure(root_distributions(project)).items()):
        line, wheel = pin(dist, wheels)
        artifact.requirements.append(line)
        if wheel:
            artifact.wheels.append(wheel)
    header = (f"# Written by flue build (Flue {__version__}, Python {sys.version.split()[0]}).\n"
              "# Install from this folder: pip install -r requirements.txt (the ./wheels paths are relative).\n")
    (artifact.output / "requirements.txt").write_text(header + "\n".join(artifact.requirements) + "\n")


# -- Docker and the manifest -------------------------------------------------------------------

DOCKERFILE = """\
# Written by flue build (Flue {flue}). Build and run:
#   docker build -t my-flue-app .
#   docker run -p 3000:3000 --env-file .env my-flue-app
FROM python:{python}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT=3000
WORKDIR /app
# Dependencies first, so this layer is cached while only the project changes.
# Flue and local plugin packages install from the bundled wheels (./wheels/*.whl lines).
COPY requirements.txt ./
COPY wheels/ ./wheels/
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home flue && chown -R flue /app
USER flue
EXPOSE 3000
CMD ["flue", "start", "--root", "/app"]
"""

DOCKERIGNORE = ".venv\n__pycache__\n*.pyc\n.env\n.env.*\n"


def write_docker(artifact: Artifact) -> None:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    (artifact.output / "Dockerfile").write_text(DOCKERFILE.format(flue=__version__, python=python))
    (artifact.output / ".dockerignore").write_text(DOCKERIGNORE)


def write_manifest(project: Project, artifact: Artifact) -> dict[str, Any]:
    info = project.info()
    doc = {
        "flue": __version__,
        "python": sys.version.split()[0],
        "builtAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "sourceRoot": project.rel(project.source_root) if project.source_root != project.root else ".",
        "config": info["config"],
        "agents": [{k: a[k] for k in ("name", "file", "description", "model", "http")} for a in info["agents"]],
        "workflows": [{k: w[k] for k in ("name", "file", "kind", "http")} for w in info["workflows"]],
        "skills": [{k: s[k] for k in ("name", "file")} for s in info["skills"]],
        "channels": info["channels"],
        "plugins": [{k: p[k] for k in ("name", "source", "origin")} for p in info["plugins"]],
        "files": artifact.files,
        "skipped": artifact.skipped,
        "requirements": artifact.requirements,
        "wheels": artifact.wheels,
    }
    (artifact.output / MANIFEST).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def verify(project: Project, artifact: Artifact) -> None:
    """The copied project must load as the original did (catches files the build missed)."""
    from flue.project import load_project

    copy = load_project(artifact.output)
    if copy.errors or set(copy.agents) != set(project.agents) or set(copy.workflows) != set(project.workflows):
        problems = "; ".join(f"{d.file or '<project>'}: {d.message}" for d in copy.errors) or "agents or workflows differ"
        raise BuildError(f"the built project does not load like the original ({problems}); "
                         "add what it needs with --include")


def build(project: Project, output: Path, *, includes: list[str] | None = None) -> dict[str, Any]:
    """Write the artifact for a loaded, error-free project; return the manifest."""
    output = output.resolve()
    check_output(project, output)
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    artifact = Artifact(output=output)
    copy_project(project, artifact, list(includes or []))
    verify(project, artifact)
    write_requirements(project, artifact)
    write_docker(artifact)
    return write_manifest(project, artifact)
