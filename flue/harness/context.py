"""What the model is told before the conversation: the system prompt.

Composed once per ``init()`` (and per task child with another cwd or agent):

1. the agent's instructions (profile instructions first, see ``flue.agent``);
2. the working directory;
3. workspace context: ``AGENTS.md`` read from the sandbox at the cwd;
4. the available skills, by name and description, with the path of each
   ``SKILL.md`` in the sandbox: the agent's packaged skills (from the
   project's ``skills/``; written into the sandbox under
   ``<cwd>/.agents/skills/<name>/`` together with their sibling files so the
   model can read them) and workspace skills found at
   ``<cwd>/.agents/skills/<name>/SKILL.md``. A packaged skill wins over a
   workspace skill of the same name.

   A sandbox on the host filesystem (``local``) is the user's own directory:
   writing ``.agents/skills/`` into it would leave files behind in their
   checkout. There the packaged skills are written into a private temporary
   directory instead (``host_dir``, owned and removed by the harness on
   ``close()``); the model reads them at those absolute paths, which the
   local sandbox can see.

Histories never store the system prompt; it is rebuilt for every model call.
"""

from __future__ import annotations

import asyncio
import posixpath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from flue.authoring.skills import SkillDefinition, skill_name_problem

if TYPE_CHECKING:
    from flue.sandbox.base import SandboxEnv

SKILLS_DIR = ".agents/skills"


class SkillEntry(BaseModel):
    name: str
    description: str
    body: str
    source: Literal["packaged", "workspace"]
    path: str | None = None  # the SKILL.md inside the sandbox, when there is a sandbox
    files: list[str] = []  # a packaged skill's supporting files, relative to its folder
    origin: str | None = None  # a packaged skill's folder (what a skill object passed to skill() is matched by)


class WorkspaceContext(BaseModel):
    cwd: str
    agents_md: str | None = None
    skills: dict[str, SkillEntry] = {}
    warnings: list[str] = []


async def install_packaged_skills(
    env: SandboxEnv | None, cwd: str, skills: list[SkillDefinition], *, host_dir: str | None = None
) -> dict[str, SkillEntry]:
    """Make packaged skills readable by the model; ``host_dir``: write them there on the
    host (for host-filesystem sandboxes) instead of into the sandbox's cwd."""
    out: dict[str, SkillEntry] = {}
    for skill in skills:
        folder = posixpath.join(cwd, SKILLS_DIR, skill.name)
        path = None
        if env is not None and host_dir is not None:
            folder = posixpath.join(host_dir, skill.name)
            await asyncio.to_thread(_write_host_files, folder, _skill_files(skill))
            path = posixpath.join(folder, "SKILL.md")
        elif env is not None:
            files = await asyncio.to_thread(_skill_files, skill)
            await env.mkdir(folder, recursive=True)
            for rel, content in files.items():
                target = posixpath.join(folder, rel)
                parent = posixpath.dirname(target)
                if parent != folder:
                    await env.mkdir(parent, recursive=True)
                await env.write_file(target, content)
            path = posixpath.join(folder, "SKILL.md")
        out[skill.name] = SkillEntry(
            name=skill.name, description=skill.description, body=skill.body, source="packaged", path=path,
            files=list(skill.files) if path is not None else [], origin=skill.origin,
        )
    return out


def _write_host_files(folder: str, files: dict[str, bytes]) -> None:
    from pathlib import Path

    for rel, content in files.items():
        target = Path(folder) / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _skill_files(skill: SkillDefinition) -> dict[str, bytes]:
    from pathlib import Path

    files = skill.read_files() if skill.directory else {}
    if skill.directory and (Path(skill.directory) / "SKILL.md").is_file():
        files["SKILL.md"] = (Path(skill.directory) / "SKILL.md").read_bytes()
    elif skill.body:
        files["SKILL.md"] = (
            f"---\nname: {skill.name}\ndescription: {skill.description}\n---\n{skill.body}\n"
        ).encode()
    return files


async def discover_workspace(env: SandboxEnv | None, cwd: str) -> WorkspaceContext:
    ctx = WorkspaceContext(cwd=cwd)
    if env is None:
        return ctx
    agents_md = posixpath.join(cwd, "AGENTS.md")
    if await env.exists(agents_md):
        ctx.agents_md = (await env.read_file(agents_md)).strip() or None
    skills_dir = posixpath.join(cwd, SKILLS_DIR)
    if not await env.exists(skills_dir):
        return ctx
    for name in sorted(await env.readdir(skills_dir)):
        path = posixpath.join(skills_dir, name, "SKILL.md")
        if not await env.exists(path):
            continue
        entry, problem = parse_skill_text(await env.read_file(path), name, path)
        if entry is None:
            ctx.warnings.append(f"workspace skill at {path} ignored: {problem}")
        else:
            ctx.skills[entry.name] = entry
    return ctx


def parse_skill_text(text: str, folder: str, path: str) -> tuple[SkillEntry | None, str | None]:
    import yaml

    from flue.authoring.source import split_frontmatter

    raw, body, _ = split_frontmatter(text)
    try:
        meta: Any = yaml.safe_load(raw) if raw else {}
    except yaml.YAMLError as exc:
        return None, f"frontmatter is not valid YAML ({exc})"
    if not isinstance(meta, dict):
        return None, "frontmatter must be a mapping"
    name = str(meta.get("name") or folder)
    problem = skill_name_problem(name)
    if problem:
        return None, problem
    description = meta.get("description")
    if not isinstance(description, str) or not description.strip():
        return None, "missing 'description'"
    return SkillEntry(name=name, description=description.strip(), body=body.strip(), source="workspace", path=path), None


def instruction_variables(agent: Any, cwd: str, instance: Any = None) -> dict[str, Any]:
    """What an agent's (and its roles') instructions may use (``INSTRUCTION_VARIABLES``)."""
    from datetime import date

    return {
        "agent": {"name": agent.name, "description": agent.description or ""},
        "cwd": cwd,
        "date": date.today().isoformat(),
        "instance": instance,  # flue.instance.InstanceInfo: id, agent, conversation
    }


def render_instructions(agent: Any, cwd: str, *, instance: Any = None) -> str:
    """The agent's instructions, rendered with Jinja2 (see ``INSTRUCTION_VARIABLES``)."""
    from flue.authoring.templates import TemplateFailure, render
    from flue.harness.errors import InstructionsTemplateError

    source = agent.instructions or ""
    if "{" not in source:  # nothing to render (most instructions): skip building the variables
        return source
    try:
        return render(source, instruction_variables(agent, cwd, instance))
    except TemplateFailure as exc:
        raise InstructionsTemplateError(agent.name, exc.problem) from None


def compose_system_prompt(instructions: str, ctx: WorkspaceContext, *, has_sandbox: bool) -> str:
    parts: list[str] = []
    if instructions.strip():
        parts.append(instructions.strip())
    if has_sandbox:
        parts.append(f"# Environment\n\nYour working directory in the sandbox is {ctx.cwd}.")
    if ctx.agents_md:
        parts.append(f"# Workspace context (AGENTS.md)\n\n{ctx.agents_md}")
    if ctx.skills:
        lines = [
            "# Skills",
            "",
            "Skills are packaged instructions for specific jobs. When a request matches a skill, "
            "read its SKILL.md and follow it.",
            "",
        ]
        for entry in sorted(ctx.skills.values(), key=lambda e: e.name):
            where = f" ({entry.path})" if entry.path else ""
            lines.append(f"- {entry.name}: {entry.description}{where}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
