"""configure_provider(): per-request provider settings from a flue_app middleware, over HTTP.

The server is the real application over the real runtime; the provider is the
scripted OpenAI-compatible server, which records each request's headers, so
the test sees which API key and headers every model call really carried.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest
from fixtures.server.support import scratch_project, served

import flue
from flue.harness.errors import ProviderConfigError
from flue.models.overrides import current_settings
from flue.models.registry import ModelRegistry
from flue.testing import ScriptedModel, reply
from flue.testing.model_server import ScriptedModelServer

TENANT_PLUGIN = textwrap.dedent(
    '''
    from aiohttp import web

    import flue


    @flue.hookimpl
    def flue_app(app, runtime):
        @web.middleware
        async def tenant_gateway(request, handler):
            key = request.headers.get("X-Tenant-Key")
            if key:
                flue.configure_provider("scripted", api_key=key, headers={"X-Tenant": key.upper()})
            return await handler(request)

        app.middlewares.append(tenant_gateway)
    '''
)


def echo_user(body: dict) -> object:
    last = next(m for m in reversed(body["messages"]) if m["role"] == "user")
    return reply(f"ok: {last['content']}", chunk_size=2, delay=0.03)  # slow enough that requests overlap


async def test_concurrent_requests_reach_the_model_with_their_own_keys(tmp_path: Path) -> None:
    async with ScriptedModelServer([echo_user] * 20) as model:
        config = textwrap.dedent(f"""
            model: scripted/chat-model
            providers:
              scripted: {{api: openai-completions, base_url: {model.url}, api_key: static-key, headers: {{X-App: demo}}}}
        """)
        root = scratch_project(tmp_path, model.url, {"flue.yaml": config, "plugins/tenant.py": TENANT_PLUGIN})
        async with served(root) as srv:
            c = srv.client

            async def workflow(name: str, key: str | None) -> dict:
                headers = {"X-Tenant-Key": key} if key else {}
                resp = await c.post("/workflows/greet?wait=result", json={"name": name}, headers=headers)
                assert resp.status == 200, await resp.text()
                return await resp.json()

            async def agent(instance: str, key: str) -> dict:
                resp = await c.post(f"/agents/assistant/{instance}?wait=result", json={"message": f"hi from {instance}"},
                                    headers={"X-Tenant-Key": key})
                assert resp.status == 200, await resp.text()
                return await resp.json()

            await asyncio.gather(workflow("Ada", "key-a"), workflow("Bob", "key-b"),
                                 agent("t1", "key-c"), agent("t2", "key-d"))
            await workflow("Nobody", None)  # no tenant: the registration alone

        seen = {}
        for record in model.records:
            user = next(m["content"] for m in reversed(record.body["messages"]) if m["role"] == "user")
            seen[user] = (record.headers.get("authorization"), record.headers.get("x-tenant"), record.headers.get("x-app"))
        assert seen == {
            "Greet Ada.": ("Bearer key-a", "KEY-A", "demo"),  # headers merged over the registration's
            "Greet Bob.": ("Bearer key-b", "KEY-B", "demo"),
            "hi from t1": ("Bearer key-c", "KEY-C", "demo"),  # durable agent prompts keep their request's settings
            "hi from t2": ("Bearer key-d", "KEY-D", "demo"),
            "Greet Nobody.": ("Bearer static-key", None, "demo"),  # nothing leaked into a later request
        }
        assert current_settings() == {}  # and the test's own context never saw any of it


async def test_settings_stay_in_their_context_and_cannot_change_a_provider_object() -> None:
    async def tenant(key: str) -> str | None:
        flue.configure_provider("acme", api_key=key)
        await asyncio.sleep(0.01)
        flue.configure_provider("acme", headers={"X-Trace": key})  # adds to the earlier settings
        resolved = ModelRegistry({"acme": {"api": "openai-completions", "base_url": "http://127.0.0.1:1/v1"}}).resolve("acme/m")
        assert resolved.registration is not None and resolved.registration.headers == {"X-Trace": key}
        return resolved.registration.api_key

    assert await asyncio.gather(tenant("k1"), tenant("k2")) == ["k1", "k2"]
    assert current_settings() == {}
    plain = ModelRegistry({"acme": {"api": "openai-completions", "base_url": "http://127.0.0.1:1/v1"}}).resolve("acme/m")
    assert plain.registration is not None and plain.registration.api_key is None

    async def on_object() -> None:
        flue.configure_provider("obj", base_url="http://127.0.0.1:2")
        ModelRegistry({"obj": ScriptedModel([])}).resolve("obj/m")

    with pytest.raises(ProviderConfigError, match="provider object"):
        await asyncio.create_task(on_object())
    with pytest.raises(ValueError):
        flue.configure_provider("anthropic/claude", api_key="x")
