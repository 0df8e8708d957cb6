"""The aiohttp application: Flue's routes over a runtime, plus what plugins add.

Three ways to get one:

- :func:`make_app` (what ``flue dev`` and ``flue start`` serve): Flue's routes
  at ``/`` or under ``prefix``, with every unmatched path answering the error
  envelope (``route_not_found``);
- :func:`build_flue_app`, the equivalent of Flue's ``flue()`` sub-app, to mount
  in your own application next to your routes::

      outer = web.Application(middlewares=[error_middleware], client_max_size=body_limit(runtime))
      outer.add_subapp("/api", build_flue_app(runtime))

  (admission ``streamUrl`` values then carry the ``/api`` prefix; set
  ``client_max_size`` on the outer app: aiohttp reads bodies with the limit of
  the app that accepted the connection; :func:`body_limit` is ``limits.body``);
- :func:`create_app`, a factory for external runners::

      FLUE_ROOT=/srv/project python -m aiohttp.web -H 127.0.0.1 -P 8080 flue.server.app:create_app

Routes (relative to the mount point): ``POST/GET/HEAD /agents/{name}/{id}``
(GET with ``Upgrade: websocket`` opens a socket), ``POST /workflows/{name}``
(and its socket), ``GET/HEAD /runs/{run_id}`` (``?meta`` for the run record),
``/channels/{name}/{suffix}``, ``GET /openapi.json``, ``GET /health`` (no auth, for
load balancers and orchestrators), the read-only admin
mount when enabled (``flue.server.admin``), and the playground page at
``/_flue/`` with it under ``flue dev`` or with ``playground: true``
(``flue.server.playground``). Each route answers other methods
with 405 ``method_not_allowed`` and ``Allow``.

Plugins' ``flue_app(app, runtime)`` hooks run on the Flue application before
its routes are added, so their middleware wraps Flue's routes (inside the
error middleware: an ``HttpError`` a middleware raises is rendered as the
envelope) and their routes take precedence. The app starts the runtime's
coordinator on startup, so admitted prompts run, and on shutdown cuts
long-lived stream reads (their clients resume from the last offset); closing
the runtime stays with whoever opened it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from flue.server.channels import channel_root, channel_route
from flue.server.errors import DEV_MODE, error_middleware, mark_prepared
from flue.server.health import health_route
from flue.server.lookup import AGENT_ROUTE, HEALTH_ROUTE, OPENAPI_ROUTE, RUN_ROUTE, WORKFLOW_ROUTE
from flue.server.memory import MemoryTrimmer, trim_middleware
from flue.server.openapi import openapi_route
from flue.server.routes_agents import agent_route
from flue.server.routes_runs import run_route
from flue.server.routes_workflows import workflow_route
from flue.server.state import STATE, ServerState

if TYPE_CHECKING:
    from flue.runtime.runtime import Runtime

def body_limit(runtime: Runtime) -> int:
    """The largest request body, ``limits.body`` in flue.yaml (default 64 MiB)."""
    return int(runtime.project.config.limits.body)


async def _start_coordinator(app: web.Application) -> None:
    runtime = app[STATE].runtime
    runtime.warm_models()
    await runtime.start_coordinator()


async def _cut_readers(app: web.Application) -> None:
    await app[STATE].cut_readers()


def build_flue_app(
    runtime: Runtime, *, dev: bool = False, state: ServerState | None = None, client_max_size: int | None = None,
    open_admin: bool = False,
) -> web.Application:
    """Flue's routes as one application (mount it with ``add_subapp`` or serve it as is).

    The admin mount (:mod:`flue.server.admin`) is added when ``flue.yaml`` configures it,
    or without a token when ``open_admin`` (``flue dev`` on a loopback address); the
    playground (:mod:`flue.server.playground`) with it in ``dev`` or when ``playground:`` enables it."""
    trimmer = MemoryTrimmer()  # large bodies: give the C heap back afterwards (flue.server.memory)
    app = web.Application(
        middlewares=[error_middleware, trim_middleware(trimmer)], client_max_size=client_max_size or body_limit(runtime)
    )
    app.on_cleanup.append(trimmer.close)
    app.on_response_prepare.append(mark_prepared)
    app[STATE] = state or ServerState(runtime, dev=dev)
    app[DEV_MODE] = dev
    pm = runtime.project.pm
    if pm is not None:
        pm.hook.flue_app(app=app, runtime=runtime)
    router = app.router
    router.add_get("/openapi.json", openapi_route, name=OPENAPI_ROUTE)  # HEAD too
    router.add_route("*", "/health", health_route, name=HEALTH_ROUTE)
    router.add_route("*", "/agents/{name}/{id}", agent_route, name=AGENT_ROUTE)
    router.add_route("*", "/workflows/{name}", workflow_route, name=WORKFLOW_ROUTE)
    router.add_route("*", "/runs/{run_id}", run_route, name=RUN_ROUTE)
    router.add_route("*", "/channels/{name}", channel_root)
    router.add_route("*", "/channels/{name}/{suffix:.*}", channel_route)
    config = runtime.project.config
    admin = config.admin
    if admin is not None or open_admin:
        from flue.server.admin import mount_admin

        admin_path = admin.path if admin is not None else "/admin"
        mount_admin(app, admin_path, admin.auth if admin is not None else None)
        if dev or config.playground.enabled:
            from flue.server.playground import mount_playground

            mount_playground(app, admin_path, auth=admin is not None)
    app.on_startup.append(_start_coordinator)
    app.on_shutdown.append(_cut_readers)
    return app


def normalize_prefix(prefix: str) -> str:
    """``"api"``, ``"/api/"`` -> ``"/api"``; ``""`` and ``"/"`` -> ``""``."""
    prefix = "/" + prefix.strip().strip("/")
    return "" if prefix == "/" else prefix


def make_app(
    runtime: Runtime, *, prefix: str = "", dev: bool = False, state: ServerState | None = None,
    open_admin: bool = False,
) -> web.Application:
    """The application to serve: Flue at ``/`` or under ``prefix`` (e.g. ``/api``)."""
    prefix = normalize_prefix(prefix)
    state = state or ServerState(runtime, dev=dev)
    flue = build_flue_app(runtime, dev=dev, state=state, open_admin=open_admin)
    if not prefix:
        return flue
    outer = web.Application(middlewares=[error_middleware], client_max_size=body_limit(runtime))
    outer.on_response_prepare.append(mark_prepared)
    outer[DEV_MODE] = dev
    outer[STATE] = state  # the same object: lets the server reach it (flue_state)
    outer.add_subapp(prefix, flue)
    return outer


def flue_state(app: web.Application) -> ServerState:
    """The :class:`ServerState` of an app from :func:`make_app` (prefixed or not)."""
    return app[STATE]


async def create_app(argv: list[str] | None = None) -> web.Application:
    """App factory for ``python -m aiohttp.web ... flue.server.app:create_app [--root R] [--prefix P]``.

    The project root is ``--root``, else ``$FLUE_ROOT``, else the current
    directory; ``.env`` there is loaded. A project with errors is refused
    (diagnostics on stderr, exit 1). On shutdown the runtime drains in-flight
    work for ``--grace`` seconds (default 10) and closes.
    """
    from flue.config import load_env_file
    from flue.project import load_project
    from flue.runtime.runtime import Runtime
    from flue.server.serve import shutdown_runtime

    parser = argparse.ArgumentParser(prog="flue.server.app:create_app")
    parser.add_argument("--root", default=os.environ.get("FLUE_ROOT") or ".")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--env", dest="env_file", default=None)
    parser.add_argument("--grace", type=float, default=10.0)
    args = parser.parse_args(argv or [])
    load_env_file(Path(args.root), args.env_file)
    project = load_project(args.root)
    if project.serving_errors:
        print("flue: the project has errors; refusing to serve it:", file=sys.stderr)
        for d in project.serving_errors:
            print("  " + d.render().replace("\n", "\n  "), file=sys.stderr)
        raise SystemExit(1)
    runtime = await Runtime.open(project)
    app = make_app(runtime, prefix=args.prefix)
    state = flue_state(app)

    async def close(_app: web.Application) -> None:
        await shutdown_runtime(state, grace=args.grace)

    app.on_cleanup.append(close)
    return app
