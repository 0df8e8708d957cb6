"""Execute a declarative YAML workflow step by step (schema: flue.authoring.workflows).

Each agent named by a step gets one harness per run (named after the agent);
``session`` picks the session inside it. Step outputs are available to later
templates as ``steps.<id>``: ``text`` and ``data`` for prompt/skill/task steps,
``stdout``, ``stderr`` and ``exit_code`` for shell steps.
"""

from __future__ import annotations

from typing import Any

from flue.authoring.templates import TemplateFailure, evaluate_tree, render
from flue.authoring.workflows import Step, WorkflowDefinition
from flue.errors import FlueError, error_type_of
from flue.runtime.context import FlueContext


class StepFailed(RuntimeError):
    """A step of a YAML workflow failed; the message names the file, the step and the cause.
    When the cause is one of Flue's own errors, it keeps that error's wire type."""

    def __init__(self, message: str, *, error_type: str | None = None):
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type


class TemplateStepError(FlueError):
    """A template of a YAML workflow could not be evaluated (file, step, expression, why)."""

    error_type = "workflow_template_error"


async def run_yaml_workflow(wf: WorkflowDefinition, ctx: FlueContext) -> Any:
    variables: dict[str, Any] = {"payload": ctx.payload, "env": dict(ctx.env), "steps": {}, "run_id": ctx.id}
    harnesses: dict[str, Any] = {}
    last: dict[str, Any] = {}
    where = wf.file or f"workflow '{wf.name}'"
    for index, step in enumerate(wf.steps, start=1):
        label = f"step '{step.id}'" if step.id else f"step {index}"
        try:
            last = await _run_step(step, wf, ctx, harnesses, variables)
        except StepFailed:
            raise
        except TemplateFailure as exc:
            raise TemplateStepError(f"{where}, {label} ({step.kind}): {exc}") from None
        except Exception as exc:
            raise StepFailed(f"{where}, {label} ({step.kind}) failed: {type(exc).__name__}: {exc}",
                             error_type=error_type_of(exc)) from exc
        if step.id:
            variables["steps"][step.id] = last
    if wf.return_ is not None:
        try:
            return evaluate_tree(wf.return_, variables)
        except TemplateFailure as exc:
            raise TemplateStepError(f"{where}, return: {exc}") from None
    if last.get("data") is not None:
        return last["data"]
    return last.get("text", last.get("stdout"))


async def _harness(step: Step, wf: WorkflowDefinition, ctx: FlueContext, harnesses: dict[str, Any]) -> Any:
    agent = step.agent or wf.agent
    key = agent or "__shell__"
    if key not in harnesses:
        if agent is None:
            # A shell step with no agent: a sandbox-only harness that never calls a model.
            from flue.authoring.agents import AgentDefinition

            harnesses[key] = await ctx.init(AgentDefinition(name="shell", model=False), name=key)
        else:
            harnesses[key] = await ctx.init(agent, name=agent)
    return harnesses[key]


async def _run_step(
    step: Step, wf: WorkflowDefinition, ctx: FlueContext, harnesses: dict[str, Any], variables: dict[str, Any]
) -> dict[str, Any]:
    harness = await _harness(step, wf, ctx, harnesses)
    session = await harness.session(step.session)
    options: dict[str, Any] = {}
    if step.result is not None:
        options["result"] = step.result
    if step.kind == "shell":
        out = await session.shell(
            render(step.shell or "", variables),
            cwd=step.cwd,
            env={k: render(v, variables) for k, v in step.env.items()} or None,
            timeout=step.timeout,
        )
        result = {"stdout": out.stdout, "stderr": out.stderr, "exit_code": out.exit_code}
        if step.check and out.exit_code != 0:
            raise StepFailed(f"{step.id or 'shell step'} exited with {out.exit_code}: {out.stderr.strip()[:500]}")
        return result
    if step.model is not None:
        options["model"] = step.model
    if step.thinking is not None:
        options["thinking"] = step.thinking
    if step.role is not None:
        options["role"] = step.role
    if step.kind == "prompt":
        res = await session.prompt(render(step.prompt or "", variables), **options)
    elif step.kind == "skill":
        res = await session.skill(step.skill, args=evaluate_tree(step.args, variables), **options)
    else:
        res = await session.task(render(step.task or "", variables), agent=step.subagent, cwd=step.cwd, **options)
    return {"text": res.text, "data": res.data}
