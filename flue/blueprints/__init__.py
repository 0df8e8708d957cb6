"""Blueprints: Markdown implementation guides that ``flue add`` prints for a
coding agent (or a person) to apply to a project: a sandbox connector, a
channel, a database adapter, a tooling integration.

The guides ship inside the package (``flue/blueprints/guides/``): nothing is
fetched at run time. Third-party plugins add more through the
``flue_blueprints`` hook (a list of :class:`Blueprint`).

Guide format (what :func:`check_blueprint` enforces):

- YAML front matter: ``kind``, ``name``, ``version`` (a positive integer),
  ``description`` (one line), optional ``website`` and ``aliases``. A kind's
  *generic* guide (``<kind>.md``, used for ``flue add <kind> <url>``) has
  ``generic: true`` and contains the placeholder ``{{URL}}``.
- A Markdown body that starts with an H1 title and ends with an
  ``## Upgrade guide`` section holding ``### Version N — YYYY-MM-DD`` for
  every version 1..N in order (version 1 says ``Initial version.``).
- Every file a guide generates starts with the marker comment
  ``# flue-blueprint: <kind>/<name>@<version>``, which ``flue update`` looks for.
- Python code blocks name the file they belong to in the fence
  (```` ```python title="plugins/slack_channel.py" ````) and are complete:
  Flue's own test suite writes them out and runs them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

BlueprintKind = Literal["sandbox", "channel", "database", "tooling"]
KINDS: tuple[str, ...] = ("sandbox", "channel", "database", "tooling")

#: ``# flue-blueprint: channel/slack@2`` (any comment prefix: ``#``, ``//``, ``<!--``).
MARKER = re.compile(r"flue-blueprint:\s*(?P<kind>[a-z]+)/(?P<name>[A-Za-z0-9_.-]+)@(?P<version>\d+)")
_VERSION_HEADING = re.compile(r"^### Version (\d+) — (\d{4}-\d{2}-\d{2})\s*$", re.M)
_UPGRADE_HEADING = "## Upgrade guide"


class UpgradeStep(BaseModel):
    version: int
    date: str
    body: str


class Blueprint(BaseModel):
    """One guide. ``markdown`` is the body without front matter."""

    kind: BlueprintKind
    name: str
    description: str
    markdown: str
    version: int = Field(1, ge=1)
    website: str | None = None
    aliases: list[str] = Field(default_factory=list)
    generic: bool = False
    source: str = "flue"  # "flue" for built-in guides, else the plugin that registered it

    @property
    def slug(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def marker(self) -> str:
        return f"# flue-blueprint: {self.slug}@{self.version}"

    def render(self, url: str | None = None) -> str:
        """The Markdown to print (a generic guide names ``url`` as the starting point)."""
        text = self.markdown.replace("{{URL}}", url) if url is not None else self.markdown
        return text.rstrip("\n") + "\n"

    def upgrades(self) -> list[UpgradeStep]:
        """The ``### Version N`` entries of the Upgrade guide, in order."""
        _, sep, tail = self.markdown.partition(_UPGRADE_HEADING)
        if not sep:
            return []
        matches = list(_VERSION_HEADING.finditer(tail))
        steps = []
        for i, m in enumerate(matches):
            end = matches[i + 1].start() if i + 1 < len(matches) else len(tail)
            steps.append(UpgradeStep(version=int(m.group(1)), date=m.group(2), body=tail[m.end():end].strip()))
        return steps

    def steps_after(self, version: int) -> list[UpgradeStep]:
        """The upgrade steps a file at ``version`` needs to reach this guide's version."""
        return [s for s in self.upgrades() if s.version > version]


def parse_blueprint(text: str, *, source: str = "flue") -> Blueprint:
    """A guide file (front matter + Markdown) as a Blueprint. Raises ValueError on bad front matter."""
    import frontmatter

    post = frontmatter.loads(text)
    meta = dict(post.metadata)
    if "kind" not in meta or "name" not in meta:
        raise ValueError("a blueprint's front matter needs 'kind' and 'name'")
    return Blueprint.model_validate({**meta, "markdown": post.content.strip() + "\n", "source": source})


def check_blueprint(bp: Blueprint) -> list[str]:
    """Problems with a guide's structure (empty when it is well formed)."""
    problems: list[str] = []
    body = bp.markdown
    if not body.lstrip().startswith("# "):
        problems.append("the guide must start with an H1 title")
    h2 = re.findall(r"^## .*$", body, re.M)
    if not h2 or h2[-1].strip() != _UPGRADE_HEADING:
        problems.append(f"the last H2 section must be '{_UPGRADE_HEADING}'")
    versions = [s.version for s in bp.upgrades()]
    if versions != list(range(1, bp.version + 1)):
        problems.append(f"the upgrade guide must list versions 1..{bp.version} in order, found {versions}")
    steps = bp.upgrades()
    if steps and steps[0].body != "Initial version.":
        problems.append("version 1's entry must be exactly 'Initial version.'")
    if bp.generic:
        if "{{URL}}" not in body:
            problems.append("a generic guide must contain the {{URL}} placeholder")
    elif f"flue-blueprint: {bp.slug}@{bp.version}" not in body:
        problems.append(f"the generated files must carry the marker '{bp.marker}'")
    for block in code_blocks(bp.markdown):
        if block.language == "python" and not block.title:
            problems.append(f"a python code block has no title=\"<file path>\" (starts: {block.code[:40]!r})")
    return problems


@dataclass(frozen=True)
class CodeBlock:
    language: str
    title: str | None  # the file the block belongs to
    code: str


_FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<code>.*?)^```\s*$", re.M | re.S)
_TITLE = re.compile(r'title="([^"]+)"')


def code_blocks(markdown: str) -> list[CodeBlock]:
    """Fenced code blocks of a guide, with their language and ``title="..."`` file path."""
    out = []
    for m in _FENCE.finditer(markdown):
        info = m.group("info").strip()
        language = info.split()[0] if info else ""
        title = _TITLE.search(info)
        out.append(CodeBlock(language=language, title=title.group(1) if title else None, code=m.group("code")))
    return out


def files(bp: Blueprint) -> dict[str, str]:
    """The files a guide tells you to create, by path (later blocks for one path append)."""
    out: dict[str, str] = {}
    for block in code_blocks(bp.markdown):
        if block.title:
            out[block.title] = out.get(block.title, "") + block.code
    return out


# -- the catalog -----------------------------------------------------------------------


class Catalog(BaseModel):
    """Every guide known to this installation: the built-ins plus plugin contributions."""

    named: dict[str, Blueprint] = Field(default_factory=dict)  # by slug
    generic: dict[str, Blueprint] = Field(default_factory=dict)  # by kind
    warnings: list[str] = Field(default_factory=list)

    def by_kind(self, kind: str) -> list[Blueprint]:
        return sorted((b for b in self.named.values() if b.kind == kind), key=lambda b: b.name)

    def find(self, kind: str, name: str) -> Blueprint | None:
        """Exact name, then an exact alias, then either case-insensitively."""
        candidates = self.by_kind(kind)
        for exact in (True, False):
            for bp in candidates:
                names = [bp.name, *bp.aliases]
                if (name in names) if exact else (name.lower() in (n.lower() for n in names)):
                    return bp
        return None

    def add(self, bp: Blueprint) -> None:
        if bp.generic:
            self.generic[bp.kind] = bp
            return
        old = self.named.get(bp.slug)
        if old is not None:
            self.warnings.append(f"blueprint {bp.slug} from {old.source} is replaced by the one from {bp.source}")
        self.named[bp.slug] = bp


def builtin_blueprints() -> list[Blueprint]:
    """The guides shipped with Flue (``flue/blueprints/guides/*.md``)."""
    folder = resources.files("flue.blueprints") / "guides"
    out = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            out.append(parse_blueprint(entry.read_text(encoding="utf-8")))
    return out


def load_catalog(source_root: Path | None = None) -> Catalog:
    """Built-in guides plus those of installed and project plugins (``flue_blueprints``).

    A plugin that fails, or returns something that is not a Blueprint, is a
    warning; built-in guides stay available.
    """
    catalog = Catalog()
    for bp in builtin_blueprints():
        catalog.add(bp)
    from flue.plugins import load_plugins

    pm, _infos, diags = load_plugins(source_root)
    catalog.warnings += [d.message for d in diags]
    for impl in pm.hook.flue_blueprints.get_hookimpls():
        plugin = pm.get_name(impl.plugin) or "?"
        try:
            returned: Any = impl.function()
            contributed = list(returned or [])
        except Exception as exc:
            catalog.warnings.append(f"plugin '{plugin}' failed in flue_blueprints: {exc!r}")
            continue
        for item in contributed:
            if not isinstance(item, Blueprint):
                catalog.warnings.append(f"plugin '{plugin}' returned {type(item).__name__} from flue_blueprints, not a Blueprint")
                continue
            catalog.add(item.model_copy(update={"source": plugin}))
    return catalog


# -- markers in a project ---------------------------------------------------------------

SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "dist", ".mypy_cache", ".pytest_cache",
             ".ruff_cache", "build", ".tox"}
MAX_SCAN_BYTES = 1_000_000


@dataclass(frozen=True)
class MarkedFile:
    path: str  # relative to the project root
    line: int
    version: int


def find_markers(root: Path, kind: str, name: str) -> list[MarkedFile]:
    """Files under ``root`` carrying ``flue-blueprint: <kind>/<name>@N`` (skipping virtualenvs,
    VCS folders, build output and files over 1 MB)."""
    found = []
    for path in _walk(root):
        try:
            if path.stat().st_size > MAX_SCAN_BYTES:
                continue
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            m = MARKER.search(line)
            if m and m.group("kind") == kind and m.group("name").lower() == name.lower():
                found.append(MarkedFile(path.relative_to(root).as_posix(), number, int(m.group("version"))))
                break
    return found


def _walk(root: Path):
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            if entry.name not in SKIP_DIRS and not entry.name.endswith(".egg-info"):
                yield from _walk(entry)
        elif entry.is_file():
            yield entry
