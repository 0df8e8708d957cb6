"""``bash``: run a shell command in the sandbox.

Limits: the model sees the last :data:`BASH_MAX_CHARS` characters of the
output (stdout, then stderr); the timeout defaults to the sandbox's (120 s
unless the agent's sandbox options say otherwise) and may be set per call up
to :data:`BASH_MAX_TIMEOUT` seconds. A timed-out command is stopped and
reported with exit code 124; that is a normal result, not a tool error, so the
agent can carry on.
"""

from __future__ import annotations

from typing import Any

from flue.builtin_tools._common import env_of, keep_tail
from flue.tools import Tool, ToolContext, ToolError

BASH_MAX_CHARS = 30_000
BASH_MAX_TIMEOUT = 600

DESCRIPTION = f"""Run a bash command in the sandbox and return its output and exit code.

- Runs in the agent's working directory. Each call starts a fresh shell: files persist between calls, variables and `cd` do not (chain with `&&` or use absolute paths).
- stdout then stderr are returned; a non-zero exit code is shown as `[exit code: N]`.
- Output is truncated to the last {BASH_MAX_CHARS:,} characters (a marker says how much was cut). Prefer `grep`, `head`, `tail` or `wc` over dumping large files.
- `timeout` is in seconds (default: the sandbox's, 120 unless configured; max {BASH_MAX_TIMEOUT}). A command that runs too long is stopped with exit code 124.
- Prefer the read, write, edit, grep and glob tools for file work."""

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "command": {"type": "string", "minLength": 1, "description": "The command to run, e.g. `ls -la`"},
        "timeout": {
            "type": "number",
            "exclusiveMinimum": 0,
            "maximum": BASH_MAX_TIMEOUT,
            "description": f"Timeout in seconds (max {BASH_MAX_TIMEOUT})",
        },
    },
    "required": ["command"],
    "additionalProperties": False,
}


def format_result(stdout: str, stderr: str, exit_code: int) -> str:
    out = stdout
    if stderr:
        if out and not out.endswith("\n"):
            out += "\n"
        out += stderr
    if exit_code != 0:
        if out and not out.endswith("\n"):
            out += "\n"
        out += f"[exit code: {exit_code}]"
    if not out:
        return "(no output)"
    return keep_tail(out.rstrip("\n"), BASH_MAX_CHARS)


async def execute(args: dict[str, Any], ctx: ToolContext) -> str:
    env = env_of(ctx)
    timeout = args.get("timeout")
    try:
        result = await env.exec(args["command"], cwd=ctx.cwd, timeout=float(timeout) if timeout else None)
    except FileNotFoundError:
        raise ToolError(f"the working directory {ctx.cwd} does not exist in the sandbox") from None
    return format_result(result.stdout, result.stderr, result.exit_code)


def make() -> Tool:
    return Tool(name="bash", description=DESCRIPTION, parameters=PARAMETERS, execute=execute)
