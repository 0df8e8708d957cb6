"""The playground over HTTP: what ``flue start`` serves at ``/_flue/`` and the project route behind it.

``flue start`` serves the page only with ``playground: true`` in flue.yaml, which
needs an ``admin:`` section; the page's files are static and the same for every
project, and everything it shows comes from the API, which then answers only
with the admin token. ``GET <admin>/project`` is ``flue info --json`` plus what a
client needs (instructions, payload schemas), with a revision as its ETag.
The browser test is test_playground_browser.py.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest
from fixtures.server.support import assert_envelope, scratch_project, served, write_files

from flue.project import load_project
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

pytest_plugins = ["flue.testing.pytest_plugin"]

TOKEN = "playground-admin-token-1"
ADMIN = "admin: {auth: {bearer_env: PLAYGROUND_ADMIN_TOKEN}}\n"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.slow
async def test_flue_start_serves_the_playground_only_when_enabled(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    env = {"PLAYGROUND_ADMIN_TOKEN": TOKEN}
    off = scratch_project(tmp_path / "off", scripted_model_server.url, config=ADMIN)
    on = scratch_project(tmp_path / "on", scripted_model_server.url, config=ADMIN + "playground: true\n")
    timeout = aiohttp.ClientTimeout(total=10)
    async with FlueServerProcess(off, env=env) as server, aiohttp.ClientSession(timeout=timeout) as http:
        for path in ("/_flue/", "/_flue/app.js", "/_flue/config.json"):
            async with http.get(server.url + path, headers=BEARER) as resp:
                assert resp.status == 404, path
                assert_envelope(await resp.json(), "route_not_found")
        async with http.get(f"{server.url}/admin/project", headers=BEARER) as resp:
            assert resp.status == 200  # the admin API itself is there: it has its own section
        assert "playground" not in server.output()

    async with FlueServerProcess(on, env=env) as server, aiohttp.ClientSession(timeout=timeout) as http:
        async with http.get(f"{server.url}/_flue", allow_redirects=False) as resp:
            assert resp.status == 308 and resp.headers["Location"] == "/_flue/"
        async with http.get(f"{server.url}/_flue/") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "script-src" not in resp.headers["Content-Security-Policy"]  # default-src 'self' covers it
            assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            page = await resp.text()
            assert '<script type="module" src="app.js">' in page
        for name, kind in (("app.js", "text/javascript"), ("api.js", "text/javascript"), ("form.js", "text/javascript"),
                           ("markdown.js", "text/javascript"), ("style.css", "text/css")):
            async with http.get(f"{server.url}/_flue/{name}") as resp:
                assert resp.status == 200 and resp.content_type == kind, name
                page += await resp.text()
        assert "http://" not in page and "https://" not in page  # nothing from elsewhere: works offline
        for name in ("secret.py", "evil.js", "..%2F..%2Fflue.yaml"):
            async with http.get(f"{server.url}/_flue/{name}") as resp:
                assert resp.status == 404, name
                assert_envelope(await resp.json(), "route_not_found")
        async with http.get(f"{server.url}/_flue/config.json") as resp:
            assert await resp.json() == {"admin": "/admin", "auth": True, "dev": False}

        # the data behind the page needs the admin token
        for headers in ({}, {"Authorization": "Bearer wrong-token-123"}):
            async with http.get(f"{server.url}/admin/project", headers=headers) as resp:
                assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
                assert_envelope(await resp.json(), "unauthorized")
        async with http.get(f"{server.url}/admin/project", headers=BEARER) as resp:
            assert resp.status == 200
            doc = await resp.json()
            etag = resp.headers["ETag"]
        assert etag == f'"{doc["revision"]}"'
        agents = {a["name"]: a for a in doc["agents"]}
        assert agents["assistant"]["http"] is True and agents["assistant"]["instructions"] == "You are terse."
        assert agents["guarded"]["auth"] is True and agents["assistant"]["auth"] is False
        workflows = {w["name"]: w for w in doc["workflows"]}
        assert workflows["echo"]["payload"] is None
        assert {"diagnostics", "skills", "channels", "plugins", "root"} <= set(doc)
        async with http.get(f"{server.url}/admin/project", headers={**BEARER, "If-None-Match": etag}) as resp:
            assert resp.status == 304 and resp.headers["ETag"] == etag
        async with http.get(f"{server.url}/admin/openapi.json", headers=BEARER) as resp:
            assert "/project" in (await resp.json())["paths"]
        assert f"flue start: playground at {server.url}/_flue/" in server.output()


async def test_the_project_revision_follows_the_files(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dev mode serves the page with the admin API; the revision changes with a definition (what
    the page polls for); a --prefix mount prefixes the page and the admin path it is given."""
    monkeypatch.setenv("PLAYGROUND_ADMIN_TOKEN", TOKEN)
    root = scratch_project(tmp_path, scripted_model_server.url, config=ADMIN)
    async with served(root, dev=True) as srv:
        assert (await srv.client.get("/_flue/")).status == 200
        assert await (await srv.client.get("/_flue/config.json")).json() == {"admin": "/admin", "auth": True, "dev": True}
        before = await (await srv.client.get("/admin/project", headers=BEARER)).json()
    (root / "agents" / "assistant.md").write_text("---\ndescription: changed\nhttp: true\n---\nBe brief.\n")
    async with served(root, prefix="/api") as srv:
        assert (await srv.client.get("/api/_flue/")).status == 404  # flue start: not without playground: true
        after = await (await srv.client.get("/api/admin/project", headers=BEARER)).json()
    assert after["revision"] != before["revision"]
    assert [a["description"] for a in after["agents"] if a["name"] == "assistant"] == ["changed"]
    write_files(root, {"flue.yaml": (root / "flue.yaml").read_text() + "playground: true\n"})
    async with served(root, prefix="/api") as srv:
        assert (await srv.client.get("/api/_flue/")).status == 200
        assert await (await srv.client.get("/api/_flue/config.json")).json() == {
            "admin": "/api/admin", "auth": True, "dev": False}


def test_playground_without_admin_is_a_diagnostic(tmp_path: Path) -> None:
    write_files(tmp_path, {"flue.yaml": "playground: true\n", "agents/a.md": "---\nhttp: true\n---\nHi.\n"})
    errors = load_project(tmp_path).errors
    assert [d.code for d in errors] == ["config.playground-needs-admin"] and errors[0].line == 1


async def test_the_project_route_scrubs_secrets(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instructions (and everything else the route answers) lose the values of the project's secrets:
    here the admin token itself, which a careless agent file quotes."""
    monkeypatch.setenv("PLAYGROUND_ADMIN_TOKEN", TOKEN)
    root = scratch_project(tmp_path, scripted_model_server.url, {
        "agents/leaky.md": f"---\nhttp: true\n---\nNever say {TOKEN} out loud.\n",
    }, config=ADMIN)
    async with served(root) as srv:
        text = await (await srv.client.get("/admin/project", headers=BEARER)).text()
    assert TOKEN not in text and "Never say [redacted] out loud." in text
