"""Workflows: ``workflows/<name>.py`` (``async def run(ctx)``) and
``workflows/<name>.yaml`` (declarative steps).

Python workflows are found by reading their syntax tree, never by importing
them, so discovery stays cheap and a broken import cannot crash ``flue info``.
A module-level ``http = True`` (or ``http = {"auth": {"bearer_env": "TOKEN"}}``)
exposes the workflow over HTTP.

YAML workflow::

    description: Greet someone and summarise the greeting
    http: true
    agent: assistant            # default agent for the steps
    payload:                    # optional JSON Schema for the payload
      type: object
      required: [name]
    steps:
      - id: greeting
        prompt: "Greet {{ payload.name }}"
        result: {type: object, properties: {text: {type: string}}, required: [text]}
      - id: shout
        shell: "echo '{{ steps.greeting.data.text }}' | tr a-z A-Z"
    return: "{{ steps.shout.stdout }}"

A step is exactly one of ``prompt``, ``skill`` (with ``args``), ``task`` (with an
optional ``subagent``) or ``shell`` (with ``cwd``/``env``). ``agent`` and
``session`` choose where it runs, ``role`` picks one of the agent's roles for a
prompt, skill or task step; a shell step
fails the run on a non-zero exit code unless it sets ``check: false``. Every string is a Jinja2 template over
``payload``, ``env`` and ``steps.<id>`` (each step's ``text``, ``data``,
``stdout``, ``stderr``, ``exit_code``). ``return`` is evaluated last; a string that
is exactly one ``{{ expression }}`` keeps the expression's type.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from flue.authoring.agents import HttpSpec, ThinkingLevel
from flue.authoring.source import load_yaml_mapping, parse_python
from flue.diagnostics import Diagnostic, pydantic_diagnostics

STEP_KINDS = ("prompt", "skill", "task", "shell")


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    prompt: str | None = None
    skill: str | None = None
    task: str | None = None
    shell: str | None = None
    agent: str | None = None
    session: str = "default"
    subagent: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    model: str | None = None
    thinking: ThinkingLevel | None = None
    role: str | None = Field(None, description="prompt/skill/task steps: one of the agent's roles")
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout: float | None = Field(None, gt=0)
    check: bool = Field(True, description="shell steps: fail the workflow on a non-zero exit code")

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        kinds = [k for k in STEP_KINDS if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(f"a step needs exactly one of {', '.join(STEP_KINDS)} (found {kinds or 'none'})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in STEP_KINDS if getattr(self, k) is not None)


class WorkflowDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    file: str | None = None
    path: str | None = None
    kind: Literal["python", "yaml"]
    description: str | None = None
    http: HttpSpec | None = None
    agent: str | None = None
    payload: dict[str, Any] | None = None
    steps: list[Step] = Field(default_factory=list)
    return_: Any = Field(None, alias="return")

    @model_validator(mode="before")
    @classmethod
    def _http_shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("http") is True:
            data = {**data, "http": {}}
        elif isinstance(data, dict) and data.get("http") is False:
            data = {**data, "http": None}
        return data

    @property
    def exposed(self) -> bool:
        return self.http is not None and self.http.enabled


def parse_python_workflow(path: Path, *, rel: str) -> tuple[WorkflowDefinition | None, list[Diagnostic]]:
    tree, diags = parse_python(path, rel, code="workflow")
    if tree is None:
        return None, diags
    run_node: ast.stmt | None = None
    http: Any = None
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef) and node.name == "run":
            run_node = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "http" for t in targets) and node.value is not None:
                try:
                    http = ast.literal_eval(node.value)
                except ValueError:
                    return None, [
                        Diagnostic(
                            code="workflow.http-not-literal",
                            file=rel,
                            line=node.lineno,
                            message="'http' must be a literal (True, or a dict such as {'auth': {'bearer_env': 'TOKEN'}})",
                        )
                    ]
    if run_node is None:
        return None, [
            Diagnostic(
                code="workflow.missing-run",
                file=rel,
                message="workflow module does not define 'async def run(ctx)'",
                hint="add: async def run(ctx):\n      return {...}",
            )
        ]
    if not isinstance(run_node, ast.AsyncFunctionDef):
        return None, [
            Diagnostic(
                code="workflow.run-not-async",
                file=rel,
                line=run_node.lineno,
                message="'run' must be declared 'async def run(ctx)'",
            )
        ]
    data = {"name": path.stem, "file": rel, "path": str(path), "kind": "python", "description": ast.get_docstring(tree)}
    if http is not None:
        data["http"] = http
    try:
        return WorkflowDefinition.model_validate(data), []
    except Exception as exc:
        return None, pydantic_diagnostics(exc, file=rel, code_prefix="workflow")


def parse_yaml_workflow(path: Path, *, rel: str) -> tuple[WorkflowDefinition | None, list[Diagnostic]]:
    data, key_lines, diags = load_yaml_mapping(path, rel, code="workflow", what="a workflow YAML file")
    if data is None:
        return None, diags
    for key in ("name", "file", "path", "kind"):
        if key in data:
            return None, [
                Diagnostic(code="workflow.unknown-key", file=rel, line=key_lines.get(key), message=f"unknown key '{key}'")
            ]
    try:
        wf = WorkflowDefinition.model_validate({**data, "name": path.stem, "file": rel, "path": str(path), "kind": "yaml"})
    except Exception as exc:
        return None, pydantic_diagnostics(exc, file=rel, code_prefix="workflow", line_of=key_lines,
                                         schema=WorkflowDefinition, docs="workflows")
    if not wf.steps:
        return None, [Diagnostic(code="workflow.no-steps", file=rel, line=key_lines.get("steps"), message="a YAML workflow needs at least one step")]
    return wf, []
