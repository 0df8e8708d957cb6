"""``flue init [DIR]``: write a small working project."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", nargs="?", default=".", help="where to write the project (default: .)")
    p.add_argument("--force", action="store_true", help="overwrite files that already exist")


# Package data globs skip names starting with "." (a wheel would silently lose
# .gitignore and .env.example), so the scaffold stores them as "dot-<name>".
DOT_PREFIX = "dot-"


def project_path(packaged: str) -> str:
    """The path a packaged scaffold file is written to: ``dot-x`` becomes ``.x``."""
    return "/".join("." + p[len(DOT_PREFIX):] if p.startswith(DOT_PREFIX) else p for p in packaged.split("/"))


def scaffold_files() -> dict[str, bytes]:
    """The project files ``flue init`` writes, by their path in the new project."""
    from importlib.resources import files

    base = files("flue") / "scaffold" / "project"
    out: dict[str, bytes] = {}

    def walk(node, prefix: str) -> None:
        for child in node.iterdir():
            if child.name == "__pycache__":
                continue
            rel = f"{prefix}{child.name}"
            if child.is_dir():
                walk(child, rel + "/")
            else:
                out[project_path(rel)] = child.read_bytes()

    walk(base, "")
    return out


def main(args: argparse.Namespace) -> int:
    target = Path(args.directory)
    files = scaffold_files()
    existing = sorted(rel for rel in files if (target / rel).exists())
    if existing and not args.force:
        print(f"flue init: refusing to overwrite {', '.join(existing)} (use --force)", file=sys.stderr)
        return 1
    for rel, data in sorted(files.items()):
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    where = "the current directory" if target.resolve() == Path.cwd().resolve() else str(target)
    print(f"flue init: a Flue project is ready in {where}:", file=sys.stderr)
    for rel in sorted(files):
        print(f"  {rel}", file=sys.stderr)
    print("\nNext:", file=sys.stderr)
    for line in next_steps(target, files.get("flue.yaml", b"").decode()):
        print("  " + line, file=sys.stderr)
    return 0


def next_steps(target: Path, flue_yaml: str) -> list[str]:
    """The commands to type after ``flue init``, their comments aligned. The key step comes
    before ``flue run`` only when the scaffold's default model needs one."""
    import re
    import shlex

    model = re.search(r"^model:\s*(\S+)", flue_yaml, re.M)
    value = model.group(1) if model else ""
    default = re.fullmatch(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", value)  # ${FLUE_MODEL:-offline/rules}
    offline = (default.group(1) if default else value).startswith("offline/")
    steps: list[tuple[str, str]] = []
    if target.resolve() != Path.cwd().resolve():
        steps.append((f"cd {shlex.quote(str(target))}", "enter the project"))
    steps.append(("flue info", "see what was found"))
    key = ("cp .env.example .env", "then add API keys for real models" if offline else "then add your API key")
    if not offline:
        steps.append(key)
    steps.append(("flue run hello --payload '{\"name\": \"Ada\"}'", "run the hello workflow"))
    if offline:
        steps.append(key)
    width = max(len(command) for command, _ in steps)
    return [f"{command.ljust(width)}  # {why}" for command, why in steps]
