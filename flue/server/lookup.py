"""Finding what a request addresses: HTTP-exposed agents and workflows, and absolute URLs.

Definitions that do not opt into HTTP get the same 404 as unknown names, so a
caller cannot tell them apart. In dev mode the 404's ``dev`` hint lists the
exposed names.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from flue.authoring.agents import AgentDefinition
from flue.authoring.workflows import WorkflowDefinition
from flue.server.errors import agent_not_found, invalid_request, workflow_not_found
from flue.server.state import ServerState

#: Route names inside the Flue application (``app.router[RUN_ROUTE].url_for(run_id=...)``).
AGENT_ROUTE = "flue-agent"
WORKFLOW_ROUTE = "flue-workflow"
RUN_ROUTE = "flue-run"
OPENAPI_ROUTE = "flue-openapi"

MAX_INSTANCE_ID = 512


def exposed_agents(state: ServerState) -> dict[str, AgentDefinition]:
    return {n: a for n, a in state.project.agents.items() if a.exposed}


def exposed_workflows(state: ServerState) -> dict[str, WorkflowDefinition]:
    return {n: w for n, w in state.project.workflows.items() if w.exposed}


def exposed_agent(state: ServerState, name: str) -> AgentDefinition:
    agent = state.project.agents.get(name)
    if agent is None or not agent.exposed:
        raise agent_not_found(name, exposed_agents(state))
    return agent


def exposed_workflow(state: ServerState, name: str) -> WorkflowDefinition:
    workflow = state.project.workflows.get(name)
    if workflow is None or not workflow.exposed:
        raise workflow_not_found(name, exposed_workflows(state))
    return workflow


def check_instance_id(instance_id: str) -> None:
    # the router never matches an empty segment; a decoded %2F would split the stream path
    if not instance_id or "/" in instance_id or len(instance_id) > MAX_INSTANCE_ID:
        raise invalid_request(
            "Invalid agent instance id.",
            f"An instance id is 1 to {MAX_INSTANCE_ID} characters and contains no '/'.",
        )


def absolute(request: web.Request, url: URL) -> str:
    """``url`` (a path under this server, mount prefix included) as an absolute URL."""
    return str(request.url.join(url))


def agent_stream_url(request: web.Request) -> str:
    return str(request.url.with_query(None).with_fragment(None))


def run_stream_url(request: web.Request, run_id: str) -> str:
    return absolute(request, request.app.router[RUN_ROUTE].url_for(run_id=run_id))
