"""``GET /openapi.json``: the OpenAPI 3.1 document of the public invocation routes.

Documents ``POST /agents/{name}/{id}`` (``invokeAgent``), ``POST
/workflows/{name}`` (``invokeWorkflow``) and ``GET /health`` (``getHealth``), the first two with
``x-flue-invocation-modes: ["accepted", "wait-result"]``, the 202 admission
and 200 result bodies with their headers, and the error envelope for every
status the server answers with: 400/401/404/405/408/413/415/429/500/501/503.
``name`` enumerates the HTTP-exposed agents and workflows of the current
project. Request bodies carry the server's own rules: ``limits:`` of flue.yaml
(message length, image count and size), image objects without extra keys, the
session name's length. Channel routes are not described, as in Flue.
``servers`` carries the mount prefix, so generated clients call the right URLs.
``tests/test_openapi_conformance.py`` runs schemathesis against a real ``flue
start`` to keep the document and the server in step.

Deliberate differences from Flue's document (flue-reference.md 8.7):

- ``servers`` holds the mount prefix (Flue's is empty), and ``name`` lists the
  exposed names (Flue's document does not depend on the build);
- the workflow body is any JSON value (what the route accepts), not only an
  object; a workflow that declares a ``payload:`` schema (YAML workflows) has
  its own path, ``/workflows/<name>`` (``invokeWorkflow_<name>``), whose body is
  that schema, since the server validates against it (400) and a body schema
  cannot depend on a path parameter;
- ``GET /agents/{name}/{id}`` (``readAgentStream``, the instance's Durable
  Streams catch-up read from the start) is listed, so the document names every
  method the route's ``Allow`` header does; its ``offset``, ``tail``, ``cursor``
  and ``live`` parameters are described in prose only (their validity depends
  on the stream's state, and live responses are streams);
- 401, 408, 413, 429 and 503 are listed (Flue's lists 400/404/405/415/500/501).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flue.server.lookup import AGENT_ROUTE, MAX_INSTANCE_ID, exposed_agents, exposed_workflows
from flue.server.state import state_of
from flue.server.wire import AgentAdmission, AgentResult, WorkflowAdmission, WorkflowResult
from flue.version import __version__

ERROR_STATUSES = {
    "400": "Invalid request, query (wait) or JSON body",
    "401": "Missing or invalid bearer token",
    "404": "Unknown or not HTTP-exposed agent or workflow",
    "405": "Method not allowed",
    "408": "The request's headers or body did not arrive in time (server: header_timeout, body_timeout)",
    "413": "Body or workflow payload over its size limit (limits: in flue.yaml)",
    "415": "Body is not application/json",
    "429": "The agent instance's queue is full (queue_full); see Retry-After",
    "500": "Internal error, or a typed Flue error during ?wait=result",
    "501": "No run store configured",
    "503": "The server's backlog or connection limit is full (overloaded); see Retry-After",
}
# statuses that say when to come back, and the method list of a 405
RETRY_AFTER = {"Retry-After": {"schema": {"type": "string"}, "description": "Seconds to wait before retrying"}}
HEADERS_OF: dict[str, dict[str, Any]] = {"405": {"Allow": {"schema": {"type": "string"}, "required": True}}, "429": RETRY_AFTER,
              "503": RETRY_AFTER, "401": {"WWW-Authenticate": {"schema": {"type": "string"}}}}
STRING = {"schema": {"type": "string"}}

ERROR_ENVELOPE = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message", "details"],
            "properties": {
                "type": {"type": "string", "description": "Stable snake_case identifier"},
                "message": {"type": "string"},
                "details": {"type": "string"},
                "dev": {"type": "string", "description": "Developer hints (dev mode only)"},
                "meta": {"type": "object", "additionalProperties": True},
            },
        }
    },
}

WAIT_PARAM = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "'result' waits for the terminal result (200); omit for a 202 admission",
    "schema": {"type": "string", "enum": ["result"]},
}


HEALTH_OPERATION: dict[str, Any] = {
    "operationId": "getHealth",
    "tags": ["server"],
    "summary": "Liveness check (no auth)",
    "responses": {
        "200": {
            "description": "The server is serving requests",
            "content": {"application/json": {"schema": {
                "type": "object",
                "required": ["status", "version"],
                "properties": {"status": {"const": "ok"}, "version": {"type": "string"}},
            }}},
        },
        "405": {"description": ERROR_STATUSES["405"], "headers": HEADERS_OF["405"],
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}},
    },
}


def agent_body(limits: Any) -> dict[str, Any]:
    """``{message, images?, session?}`` under the server's ``limits:``."""
    return {
        "type": "object",
        "required": ["message"],
        "properties": {
            "message": {"type": "string", "maxLength": int(limits.message), "description": "Prompt text"},
            "images": {
                "type": ["array", "null"],
                "maxItems": limits.images,
                "items": {
                    "type": "object",
                    "required": ["type", "data", "mimeType"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"const": "image"},
                        "data": {"type": "string", "description": "base64", "maxLength": int(limits.image)},
                        "mimeType": {"type": "string", "minLength": 1},
                    },
                },
            },
            "session": {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                        "description": "Session name inside the instance (default: default)"},
        },
    }


class _Components:
    """``components.schemas``: the error envelope and the response models (with their nested models)."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"ErrorEnvelope": ERROR_ENVELOPE}

    def ref(self, model: type[Any]) -> dict[str, Any]:
        schema = model.model_json_schema(by_alias=True, mode="serialization",
                                         ref_template="#/components/schemas/{model}")
        self.schemas.update(schema.pop("$defs", {}))
        self.schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}


def _name_param(description: str, names: list[str], others: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if names:
        schema["enum"] = names
    elif others:  # every exposed name has its own path: any other name is unknown (404)
        schema["not"] = {"enum": others}
    return {"name": "name", "in": "path", "required": True, "description": description, "schema": schema}


def _operation(op_id: str, tag: str, summary: str, params: list[dict[str, Any]], body: dict[str, Any],
               required: bool, accepted: dict[str, Any], result: dict[str, Any],
               headers: dict[str, Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {
            "description": "Admitted; read events at streamUrl from offset",
            "headers": {
                "Location": {**STRING, "required": True, "description": "Same as streamUrl"},
                "Stream-Next-Offset": {**STRING, "required": True, "description": "Same as offset"},
                **headers,
            },
            "content": {"application/json": {"schema": accepted}},
        },
        "200": {
            "description": "Completed (?wait=result)",
            "headers": {"Location": {**STRING, "required": True}, **headers},
            "content": {"application/json": {"schema": result}},
        },
    }
    for status, description in ERROR_STATUSES.items():
        responses[status] = _error_response(description, HEADERS_OF.get(status))
    return {
        "operationId": op_id,
        "tags": [tag],
        "summary": summary,
        "parameters": [*params, WAIT_PARAM],
        "requestBody": {"required": required, "content": {"application/json": {"schema": body}}},
        "responses": responses,
        "x-flue-invocation-modes": ["accepted", "wait-result"],
        "x-flue-user-defined": True,
    }


def _error_response(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }
    if headers:
        out["headers"] = headers
    return out


def _stream_read(params: list[dict[str, Any]]) -> dict[str, Any]:
    errors = {s: ERROR_STATUSES[s] for s in ("400", "401", "404", "405", "408", "503")}
    errors["404"] = "Unknown or not HTTP-exposed agent, or no prompt was admitted to the instance yet"
    return {
        "operationId": "readAgentStream",
        "tags": ["agents"],
        "summary": "Read an agent instance's event stream",
        "description": (
            "Durable Streams catch-up read of the instance's events from the start. The route also takes "
            "offset (-1, now or <readSeq>_<seq>), tail=N, cursor and live=long-poll|sse (docs/http-api.md); "
            "they are not described here: whether an offset is valid depends on the stream, and live "
            "responses are streams. HEAD answers the same headers without a body; WebSocket upgrades "
            "use the same URL."
        ),
        "parameters": params,
        "responses": {
            "200": {
                "description": "The events after the offset",
                "headers": {"Stream-Next-Offset": {**STRING, "required": True},
                            "Stream-Up-To-Date": STRING, "Stream-Closed": STRING, "ETag": STRING},
                "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}},
            },
            **{s: _error_response(d, HEADERS_OF.get(s)) for s, d in errors.items()},
        },
    }


def _payload_required(schema: dict[str, Any]) -> bool:
    """Whether a workflow with this payload schema needs a body (an empty one is ``{}``)."""
    import jsonschema

    return not jsonschema.Draft202012Validator(schema).is_valid({})


def openapi_document(request: web.Request) -> dict[str, Any]:
    state = state_of(request)
    limits = state.project.config.limits
    agents = exposed_agents(state)
    workflows = exposed_workflows(state)
    typed = {n: w.payload for n, w in sorted(workflows.items()) if w.payload is not None}
    free = sorted(n for n in workflows if n not in typed)
    # the mount prefix: the agents route's URL with its two parameters removed
    prefix = str(request.app.router[AGENT_ROUTE].url_for(name="n", id="i")).removesuffix("/agents/n/i")
    secured = any(a.http and a.http.auth for a in agents.values()) or any(
        w.http and w.http.auth for w in workflows.values()
    )
    components = _Components()
    run_id = {"X-Flue-Run-Id": {**STRING, "required": True, "description": "The run's id"}}
    agent_params = [
        _name_param("Agent name (an HTTP-exposed agents/<name>.md)", sorted(agents)),
        {"name": "id", "in": "path", "required": True, "description": "Agent instance id (no '/')",
         "schema": {"type": "string", "minLength": 1, "maxLength": MAX_INSTANCE_ID, "pattern": "^[^/]+$"}},
    ]

    def invoke_workflow(op_id: str, params: list[dict[str, Any]], body: dict[str, Any], required: bool) -> Any:
        return _operation(op_id, "workflows", "Start a workflow run", params, body, required,
                          components.ref(WorkflowAdmission), components.ref(WorkflowResult), run_id)

    paths: dict[str, Any] = {
        "/agents/{name}/{id}": {
            "post": _operation(
                "invokeAgent", "agents", "Prompt an agent instance", agent_params, agent_body(limits), True,
                components.ref(AgentAdmission), components.ref(AgentResult),
                {"Stream-Next-Offset": {**STRING, "required": True}},
            ),
            "get": _stream_read(agent_params),
        },
        "/workflows/{name}": {
            "post": invoke_workflow(
                "invokeWorkflow",
                [_name_param("Workflow name (an HTTP-exposed workflows/<name>)", free, list(typed))],
                {"description": "Any JSON value (usually an object); it becomes the run's ctx.payload"},
                False,
            )
        },
    }
    paths["/health"] = {"get": HEALTH_OPERATION}
    for name, schema in typed.items():
        paths[f"/workflows/{name}"] = {
            "post": invoke_workflow(f"invokeWorkflow_{name}", [], schema, _payload_required(schema))
        }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Flue Public API", "version": __version__,
                 "description": "Public Flue agent invocation and workflow run inspection API."},
        "servers": [{"url": prefix or "/"}],
        "paths": paths,
        "components": {"schemas": components.schemas},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


async def openapi_route(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request))
