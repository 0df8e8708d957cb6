"""The read-only admin mount: what Flue 0.11's ``admin()`` sub-app served.

``@flue/sdk`` 0.11's ``admin.agents.list``, ``admin.runs.list`` and
``runs.get`` call these routes (the 1.0 SDK reads run records at
``/runs/<id>?meta`` instead)::

    GET <path>/agents             {"items": [{name, description?, transports: {http?: true}, created: true}]}
    GET <path>/runs               ?status=&workflowName=&cursor=&limit=  ->  {"items": [RunPointer], "nextCursor"?}
    GET <path>/runs/<runId>       the RunRecord (plus 0.11's owner: {kind, workflowName, instanceId})
    GET <path>/project            the project as ``flue info --json`` sees it, plus each agent's
                                  instructions, tools, skills and subagents, each workflow's payload
                                  schema, ``loadErrors`` (flue dev: the diagnostics of a failed
                                  reload; the last good project keeps serving) and ``revision``
                                  (also the ETag; If-None-Match -> 304): it changes when
                                  ``flue dev`` reloads a changed project or fails to
    GET <path>/openapi.json       "Flue Admin API"

It is **off** unless ``flue.yaml`` enables it with a token::

    admin:
      path: /admin                        # the default
      auth: {bearer_env: FLUE_ADMIN_TOKEN}

and every request must then carry ``Authorization: Bearer <token>`` (the same
rules as agents' ``http: auth``). ``flue dev`` also serves it without a token
when it listens on a loopback address. ``limit`` must be an integer from 1 to
1000 (400 ``invalid_request`` otherwise); the same data is available from
code through :mod:`flue.runtime.inspect`.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from flue.authoring.agents import AuthSpec
from flue.runtime.inspect import agent_listing, list_runs
from flue.server.auth import auth_of, require
from flue.server.errors import NOSNIFF, invalid_request, run_not_found, run_store_unavailable
from flue.server.state import state_of
from flue.version import __version__

if TYPE_CHECKING:
    from flue.project import Project

RUN_STATUSES = ("active", "completed", "errored")
AUTH = web.AppKey("flue_admin_auth", object)


def mount_admin(app: web.Application, path: str, auth: AuthSpec | None) -> None:
    """Add the admin routes under ``path`` to the Flue application ``app`` (``auth`` None: open)."""
    app[AUTH] = auth
    base = "/" + path.strip("/")
    app.router.add_get(f"{base}/agents", _agents)
    app.router.add_get(f"{base}/runs", _runs)
    app.router.add_get(f"{base}/runs/{{run_id}}", _run)
    app.router.add_get(f"{base}/project", _project)
    app.router.add_get(f"{base}/openapi.json", _openapi)


def _json(data: Any) -> web.Response:
    return web.json_response(data, headers={**NOSNIFF, "Cache-Control": "no-store"})


def _authorize(request: web.Request) -> None:
    spec = request.config_dict.get(AUTH)
    if isinstance(spec, AuthSpec):
        require(request, spec)


async def _agents(request: web.Request) -> web.Response:
    _authorize(request)
    return _json({"items": agent_listing(state_of(request).runtime)})


async def _runs(request: web.Request) -> web.Response:
    _authorize(request)
    query = request.rel_url.query
    status = query.get("status") or None
    if status is not None and status not in RUN_STATUSES:
        raise invalid_request("Invalid query parameters.", f"status must be one of {', '.join(RUN_STATUSES)}.")
    limit: int | None = None
    if "limit" in query:
        raw = query["limit"]
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 1000:
            raise invalid_request("Invalid query parameters.", "limit must be an integer from 1 to 1000.")
        limit = int(raw)
    runtime = state_of(request).runtime
    if getattr(runtime.stores, "runs", None) is None:
        raise run_store_unavailable()
    page = await list_runs(status=status, workflow_name=query.get("workflowName") or None, limit=limit,  # type: ignore[arg-type]
                           cursor=query.get("cursor") or None, runtime=runtime)
    out: dict[str, Any] = {"items": [r.pointer() for r in page.runs]}
    if page.next_cursor:
        out["nextCursor"] = page.next_cursor
    return _json(out)


async def _run(request: web.Request) -> web.Response:
    _authorize(request)
    runtime = state_of(request).runtime
    runs = getattr(runtime.stores, "runs", None)
    if runs is None:
        raise run_store_unavailable()
    run_id = request.match_info["run_id"]
    record = await runs.get_run(run_id)
    if record is None:
        raise run_not_found(run_id)
    view = record.view()
    view["owner"] = {"kind": "workflow", "workflowName": record.workflow_name, "instanceId": record.run_id}
    return _json(view)


def project_view(project: Project, load_errors: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What ``GET <admin>/project`` answers: ``flue info --json`` with what a client needs to
    talk to the definitions (the playground builds its forms from it), secrets scrubbed, and
    ``loadErrors``: under ``flue dev``, the diagnostics of the last reload that failed."""
    from flue.redaction import scrub

    doc = project.info()
    for agent in doc["agents"]:
        a = project.agents[agent["name"]]
        agent.update(instructions=a.instructions, tools=a.tools, skills=a.skills, subagents=a.subagents,
                     auth=auth_of(a.http) is not None)
    for workflow in doc["workflows"]:
        w = project.workflows[workflow["name"]]
        workflow.update(payload=w.payload, auth=auth_of(w.http) is not None)
    doc["loadErrors"] = load_errors or []
    doc = scrub(doc)
    body = json.dumps(doc, sort_keys=True, default=str).encode("utf-8")
    return {"revision": hashlib.sha256(body).hexdigest()[:16], **doc}


async def _project(request: web.Request) -> web.Response:
    _authorize(request)
    state = state_of(request)
    doc = project_view(state.project, state.load_errors)
    etag = f'"{doc["revision"]}"'
    headers = {**NOSNIFF, "Cache-Control": "no-cache", "ETag": etag}
    if etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.json_response(doc, headers=headers, dumps=lambda v: json.dumps(v, default=str))


async def _openapi(request: web.Request) -> web.Response:
    _authorize(request)
    ok = {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}}
    return _json({
        "openapi": "3.1.0",
        "info": {"title": "Flue Admin API", "version": __version__,
                 "description": "Read-only inspection of agents and workflow runs."},
        "paths": {
            "/agents": {"get": {"operationId": "listAgents", "responses": ok}},
            "/runs": {"get": {"operationId": "listRuns", "parameters": [
                {"name": n, "in": "query", "schema": {"type": t}}
                for n, t in (("status", "string"), ("workflowName", "string"), ("cursor", "string"),
                             ("limit", "integer"))
            ], "responses": ok}},
            "/project": {"get": {"operationId": "getProject", "summary": "The project as flue info sees it",
                                 "parameters": [{"name": "If-None-Match", "in": "header", "schema": {"type": "string"}}],
                                 "responses": {**ok, "304": {"description": "Not modified (same revision)"}}}},
            "/runs/{runId}": {"get": {"operationId": "getRun", "parameters": [
                {"name": "runId", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {**ok, "404": {"description": "Run not found"}}}},
        },
    })
