"""``GET /openapi.json``: the OpenAPI 3.1 document of the public invocation routes.

Documents ``POST /agents/{name}/{id}`` (``invokeAgent``) and ``POST
/workflows/{name}`` (``invokeWorkflow``), each with
``x-flue-invocation-modes: ["accepted", "wait-result"]``, the 202 admission
and 200 result bodies, and the error envelope for 400/401/404/405/413/415/429/500/501/503.
``name`` enumerates the HTTP-exposed agents and workflows of the current
project. Stream reads and channel routes are not described, as in Flue.
``servers`` carries the mount prefix, so generated clients call the right URLs.

Deliberate differences from Flue's document (flue-reference.md 8.7): ``servers``
holds the mount prefix (Flue's is empty), ``name`` lists the exposed names, and
the workflow body is any JSON value (what the route accepts), not only an object.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from flue.server.lookup import AGENT_ROUTE, exposed_agents, exposed_workflows
from flue.server.state import state_of
from flue.server.wire import (
    MAX_IMAGE_DATA_CHARS,
    AgentAdmission,
    AgentResult,
    WorkflowAdmission,
    WorkflowResult,
)
from flue.version import __version__

ERROR_STATUSES = {
    "400": "Invalid request, query (wait) or JSON body",
    "401": "Missing or invalid bearer token",
    "404": "Unknown or not HTTP-exposed agent or workflow",
    "405": "Method not allowed",
    "413": "Body or workflow payload over its size limit (limits: in flue.yaml)",
    "415": "Body is not application/json",
    "429": "The agent instance's queue is full (queue_full); see Retry-After",
    "500": "Internal error, or a typed Flue error during ?wait=result",
    "501": "No run store configured",
    "503": "The server's backlog is full (overloaded); see Retry-After",
}

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

AGENT_BODY = {
    "type": "object",
    "required": ["message"],
    "properties": {
        "message": {"type": "string", "description": "Prompt text"},
        "images": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type", "data", "mimeType"],
                "properties": {
                    "type": {"const": "image"},
                    "data": {"type": "string", "description": "base64", "maxLength": MAX_IMAGE_DATA_CHARS},
                    "mimeType": {"type": "string"},
                },
            },
        },
        "session": {"type": "string", "description": "Session name inside the instance (default: default)"},
    },
}

WAIT_PARAM = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "'result' waits for the terminal result (200); omit for a 202 admission",
    "schema": {"type": "string", "enum": ["result"]},
}


def _schema(model: type[Any]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True, mode="serialization")


def _name_param(description: str, names: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if names:
        schema["enum"] = names
    return {"name": "name", "in": "path", "required": True, "description": description, "schema": schema}


def _operation(op_id: str, summary: str, params: list[dict[str, Any]], body: dict[str, Any], required: bool,
               accepted: type[Any], result: type[Any]) -> dict[str, Any]:
    responses: dict[str, Any] = {
        "202": {
            "description": "Admitted; read events at streamUrl from offset",
            "headers": {
                "Location": {"schema": {"type": "string"}, "description": "Same as streamUrl"},
                "Stream-Next-Offset": {"schema": {"type": "string"}, "description": "Same as offset"},
            },
            "content": {"application/json": {"schema": _schema(accepted)}},
        },
        "200": {
            "description": "Completed (?wait=result)",
            "content": {"application/json": {"schema": _schema(result)}},
        },
    }
    for status, description in ERROR_STATUSES.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
        }
    return {
        "operationId": op_id,
        "summary": summary,
        "parameters": [*params, WAIT_PARAM],
        "requestBody": {"required": required, "content": {"application/json": {"schema": body}}},
        "responses": responses,
        "x-flue-invocation-modes": ["accepted", "wait-result"],
        "x-flue-user-defined": True,
    }


def openapi_document(request: web.Request) -> dict[str, Any]:
    state = state_of(request)
    agents = sorted(exposed_agents(state))
    workflows = sorted(exposed_workflows(state))
    # the mount prefix: the agents route's URL with its two parameters removed
    prefix = str(request.app.router[AGENT_ROUTE].url_for(name="n", id="i")).removesuffix("/agents/n/i")
    secured = any(a.http and a.http.auth for a in exposed_agents(state).values()) or any(
        w.http and w.http.auth for w in exposed_workflows(state).values()
    )
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "Flue Public API", "version": __version__,
                 "description": "Public Flue agent invocation and workflow run inspection API."},
        "servers": [{"url": prefix or "/"}],
        "paths": {
            "/agents/{name}/{id}": {
                "post": _operation(
                    "invokeAgent",
                    "Prompt an agent instance",
                    [
                        _name_param("Agent name (an HTTP-exposed agents/<name>.md)", agents),
                        {"name": "id", "in": "path", "required": True, "description": "Agent instance id",
                         "schema": {"type": "string", "minLength": 1}},
                    ],
                    AGENT_BODY,
                    True,
                    AgentAdmission,
                    AgentResult,
                )
            },
            "/workflows/{name}": {
                "post": _operation(
                    "invokeWorkflow",
                    "Start a workflow run",
                    [_name_param("Workflow name (an HTTP-exposed workflows/<name>)", workflows)],
                    {"description": "Any JSON value (usually an object); it becomes the run's ctx.payload"},
                    False,
                    WorkflowAdmission,
                    WorkflowResult,
                )
            },
        },
        "components": {"schemas": {"ErrorEnvelope": ERROR_ENVELOPE}},
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


async def openapi_route(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(request))
