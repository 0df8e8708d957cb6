"""Skills in the Agent Skills format: ``skills/<name>/SKILL.md``.

Frontmatter: ``name`` (must equal the folder; lowercase letters, digits and
single hyphens; at most 64 characters), ``description`` (required, at most 1024
characters), optional ``license``, ``allowed-tools``, ``metadata``. The body is
the instructions (a Jinja2 template over the call's ``args``). Sibling files in
the folder belong to the skill.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flue.authoring.source import load_markdown
from flue.authoring.templates import check_template
from flue.diagnostics import Diagnostic, pydantic_diagnostics

SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")

# What must never be copied into a sandbox or packaged with a skill: files likely to hold
# secrets or private keys (the seeds: ".env*, .dev.vars*, credential files, key files, .aws/,
# .ssh/, and .gnupg/"). Names compare case-insensitively.
#: Directories whose every file is refused, wherever they sit in the skill folder.
SECRET_DIRECTORIES = frozenset({".aws", ".gnupg", ".ssh"})
#: Exact file names: credential files of common tools, and private keys by their usual names.
SECRET_FILE_NAMES = frozenset({
    ".env", ".dev.vars", ".netrc", "_netrc", ".npmrc", ".pypirc", ".pgpass", ".git-credentials",
    "credentials", "credentials.json", "id_rsa", "id_dsa", "id_ecdsa", "id_ed25519",
})
#: File name prefixes (variants such as ``.env.local``, ``.dev.vars.staging``).
SECRET_FILE_PREFIXES = (".env.", ".dev.vars.")
#: File name patterns: key and certificate-bundle files, and files named secret(s).
SECRET_FILE_PATTERNS = (
    re.compile(r"\.(?:key|pem|p12|pfx)$", re.IGNORECASE),
    re.compile(r"^secrets?(?:\.|$)", re.IGNORECASE),
)


def secret_reason(rel_path: str) -> str | None:
    """Why a file at ``rel_path`` (relative to a skill folder, ``/``-separated) must not be packaged,
    or None when it may be. The rule ``flue info``, ``flue start`` and ``flue build`` share."""
    *dirs, name = rel_path.split("/")
    for d in dirs:
        if d.lower() in SECRET_DIRECTORIES:
            return f"it is inside '{d}/', a directory of credentials and private keys"
    lower = name.lower()
    if lower in SECRET_FILE_NAMES or lower.startswith(SECRET_FILE_PREFIXES):
        return f"'{name}' is the name of a file that holds credentials or private keys"
    if any(p.search(name) for p in SECRET_FILE_PATTERNS):
        return f"'{name}' looks like a key, certificate bundle or secrets file"
    return None


def secret_files(folder: Path) -> list[tuple[str, str]]:
    """Every file under a skill folder that must not be packaged: ``(relative path, reason)``."""
    out = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            rel = f.relative_to(folder).as_posix()
            reason = secret_reason(rel)
            if reason is not None:
                out.append((rel, reason))
    return out


def skill_name_problem(name: str) -> str | None:
    if not name:
        return "a skill name must not be empty"
    if len(name) > 64:
        return f"skill name '{name}' is longer than 64 characters"
    if not SKILL_NAME.match(name):
        return f"skill name '{name}' must use lowercase letters, digits and single hyphens"
    return None


class SkillDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    description: str = Field(min_length=1, max_length=1024)
    license: str | None = None
    allowed_tools: list[str] | str | None = Field(None, alias="allowed-tools")
    metadata: dict[str, Any] = Field(default_factory=dict)
    body: str = ""
    file: str | None = None
    directory: str | None = None
    files: list[str] = Field(default_factory=list, description="sibling files, relative to the skill folder")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, v: str) -> str:
        problem = skill_name_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @property
    def origin(self) -> str:
        """What identifies this skill once registered on an agent: its folder, else its file."""
        return self.directory or self.file or f"inline:{self.name}"

    def read_files(self) -> dict[str, bytes]:
        """The skill's sibling files by relative path (read on demand)."""
        base = Path(self.directory or ".")
        return {rel: (base / rel).read_bytes() for rel in self.files}


def parse_skill_dir(folder: Path, *, rel: str) -> tuple[SkillDefinition | None, list[Diagnostic]]:
    path = folder / "SKILL.md"
    meta, body, key_lines, body_line, diags = load_markdown(path, rel)
    if meta is None:
        return None, diags
    out: list[Diagnostic] = []
    name = meta.get("name")
    if name is None:
        meta["name"] = folder.name
        out.append(
            Diagnostic(
                code="skill.missing-key",
                file=rel,
                line=1,
                message="missing required key 'name'",
                hint=f"add 'name: {folder.name}' to the frontmatter",
            )
        )
    elif isinstance(name, str) and skill_name_problem(name):
        return None, [
            Diagnostic(
                code="skill.invalid-name",
                file=rel,
                line=key_lines.get("name"),
                message=skill_name_problem(name) or "",
                hint="use lowercase letters, digits and single hyphens, e.g. 'code-review'",
            )
        ]
    elif name != folder.name:
        out.append(
            Diagnostic(
                code="skill.name-mismatch",
                file=rel,
                line=key_lines.get("name"),
                message=f"skill name '{name}' does not match its folder '{folder.name}'",
                hint=f"rename the folder or set 'name: {folder.name}'",
            )
        )
    secrets = secret_files(folder)
    refused = {r for r, _ in secrets}
    siblings = [
        f.relative_to(folder).as_posix() for f in sorted(folder.rglob("*"))
        if f.is_file() and f.name != "SKILL.md" and f.relative_to(folder).as_posix() not in refused
    ]
    for secret, reason in secrets:
        out.append(
            Diagnostic(
                code="skill.secret-file",
                file=f"{rel.rsplit('/', 1)[0]}/{secret}",
                message=f"a skill folder must not hold secrets: {reason}",
                hint="move credentials and private keys out of the skill folder (into .env at the project "
                "root, or your secret manager); the project is not served while this file is there",
            )
        )
    try:
        skill = SkillDefinition.model_validate(
            {**meta, "body": body.strip(), "file": rel, "directory": str(folder), "files": siblings}
        )
    except Exception as exc:
        for d in pydantic_diagnostics(exc, file=rel, code_prefix="skill", line_of=key_lines,
                                      schema=SkillDefinition, docs="skills"):
            if d.message.startswith("'name'"):
                d.code = "skill.invalid-name"
            out.append(d)
        return None, out
    out += check_template(skill.body, file=rel, line_offset=body_line, what="skill body")
    return skill, out


class SkillLoadError(ValueError):
    """A skill folder that cannot be loaded; ``diagnostics`` says why, with file and hint."""

    def __init__(self, path: Path, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        lines = "\n".join(d.render() for d in diagnostics) or f"{path}: no SKILL.md"
        super().__init__(f"cannot load the skill at {path}:\n{lines}")


def load_skill(path: str | Path) -> SkillDefinition:
    """A packaged skill as an object (Flue's ``import review from './skills/review/SKILL.md'
    with { type: 'skill' }``): ``path`` is the skill folder or its ``SKILL.md``; a relative
    path is resolved against the folder of the module that calls ``load_skill``, as an
    import would be. Pass the result to ``session.skill(...)``; put it in an agent's
    ``skills=`` to make its supporting files readable in the sandbox."""
    import sys

    target = Path(path)
    if not target.is_absolute():
        caller = sys._getframe(1).f_globals.get("__file__")
        target = (Path(caller).resolve().parent if caller else Path.cwd()) / target
    if target.name == "SKILL.md":
        target = target.parent
    if not (target / "SKILL.md").is_file():
        raise SkillLoadError(target, [Diagnostic(code="skill.missing-file", file=str(target),
                                                 message="no SKILL.md in this folder",
                                                 hint="pass the skill's folder or its SKILL.md")])
    skill, diags = parse_skill_dir(target, rel=str(target / "SKILL.md"))
    errors = [d for d in diags if d.severity == "error"]
    if skill is None or errors:
        raise SkillLoadError(target, errors or diags)
    return skill
