"""Finding what a request addresses: HTTP-exposed agents and workflows, and absolute URLs.

Definitions that do not opt into HTTP get the same 404 as unknown names, so a
caller cannot tell them apart. In dev mode the 404's ``dev`` hint lists the
exposed names and, for a definition that exists but is not exposed, says to
add ``http: true``. Absolute URLs (``streamUrl``, ``Location``) start with
``server.public_url`` when flue.yaml sets it (its path is put before the
request's), else with the request's scheme and ``Host``; forwarded headers
count only with ``server.trust_forwarded: true``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

from aiohttp import web
from yarl import URL

from flue.authoring.agents import AgentDefinition
from flue.authoring.workflows import WorkflowDefinition
from flue.server.errors import agent_not_found, invalid_request, workflow_not_found
from flue.server.state import ServerState, state_of

#: Route names inside the Flue application (``app.router[RUN_ROUTE].url_for(run_id=...)``).
AGENT_ROUTE = "flue-agent"
WORKFLOW_ROUTE = "flue-workflow"
RUN_ROUTE = "flue-run"
OPENAPI_ROUTE = "flue-openapi"
HEALTH_ROUTE = "flue-health"

MAX_INSTANCE_ID = 512


def exposed_agents(state: ServerState) -> dict[str, AgentDefinition]:
    return {n: a for n, a in state.project.agents.items() if a.exposed}


def exposed_workflows(state: ServerState) -> dict[str, WorkflowDefinition]:
    return {n: w for n, w in state.project.workflows.items() if w.exposed}


def exposed_agent(state: ServerState, name: str) -> AgentDefinition:
    agent = state.project.agents.get(name)
    if agent is None or not agent.exposed:
        hidden = (agent.file or f"agents/{name}.md") if agent is not None else None
        raise agent_not_found(name, exposed_agents(state), not_exposed=hidden)
    return agent


def exposed_workflow(state: ServerState, name: str) -> WorkflowDefinition:
    workflow = state.project.workflows.get(name)
    if workflow is None or not workflow.exposed:
        hidden = (workflow.file or f"workflows/{name}") if workflow is not None else None
        raise workflow_not_found(name, exposed_workflows(state), not_exposed=hidden)
    return workflow


def check_instance_id(instance_id: str) -> None:
    # the router never matches an empty segment; a decoded %2F would split the stream path
    if not instance_id or "/" in instance_id or len(instance_id) > MAX_INSTANCE_ID:
        raise invalid_request(
            "Invalid agent instance id.",
            f"An instance id is 1 to {MAX_INSTANCE_ID} characters and contains no '/'.",
        )


# a host[:port] as X-Forwarded-Host may carry it: a name or IPv4 address, or a bracketed IPv6 address
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")


def _first(value: str | None) -> str:
    """The first (client-nearest proxy's) value of a comma-separated forwarded header."""
    return (value or "").split(",", 1)[0].strip()


def _origin(request: web.Request) -> tuple[str, str]:
    """(``scheme://host[:port]``, path prefix) of the absolute URLs this server answers with.

    ``server.public_url`` in flue.yaml wins; otherwise the request's own scheme and
    ``Host``, with ``X-Forwarded-Proto``/``X-Forwarded-Host`` taken only when
    ``server.trust_forwarded`` says a proxy sets them (anyone can send them)."""
    server = state_of(request).project.config.server
    if server.public_url:
        public = URL(server.public_url)
        return f"{public.scheme}://{public.raw_authority}", public.raw_path.rstrip("/")
    scheme, host = request.scheme, request.host
    if server.trust_forwarded:
        proto = _first(request.headers.get("X-Forwarded-Proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded_host = _first(request.headers.get("X-Forwarded-Host"))
        if _HOST.fullmatch(forwarded_host):
            host = forwarded_host
    return f"{scheme}://{host}", ""


def absolute(request: web.Request, url: URL) -> str:
    """``url`` (a path under this server, mount prefix included) as an absolute URL."""
    origin, prefix = _origin(request)
    return origin + prefix + url.raw_path


def agent_stream_url(request: web.Request) -> str:
    return absolute(request, request.rel_url)


def run_stream_url(request: web.Request, run_id: str) -> str:
    resource = request.app.router[RUN_ROUTE]
    known = _RUN_PATHS.get(id(resource))
    if known is None or known[0] is not resource:  # url_for is slow for every run: its path once
        known = _RUN_PATHS[id(resource)] = (resource, str(resource.url_for(run_id="RUN").raw_path)[: -len("RUN")])
    origin, prefix = _origin(request)
    return origin + prefix + known[1] + quote(run_id, safe="")


#: the path of the run route up to the id, per route resource (the app may be mounted under a prefix)
_RUN_PATHS: dict[int, tuple[Any, str]] = {}
