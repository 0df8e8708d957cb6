"""Issue 17, the smaller gaps: --env once, nothing to serve, public URLs behind proxies, and
observers isolated from each other on both paths (runtime and harness) with one context shape."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_flue
from fixtures.server.support import scratch_project, served, write_files

import flue
from flue.project import load_project
from flue.testing import ScriptedModel, reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]


def test_env_given_twice_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("A=1\n")
    (tmp_path / "b.env").write_text("B=1\n")
    for command in ("info", "start", "dev", "run"):
        args = [command, "--root", str(tmp_path), "--env", "a.env", "--env", "b.env"]
        if command == "run":
            args.insert(1, "hello")
        done = run_flue(*args, cwd=tmp_path, timeout=60)
        assert done.returncode == 2, (command, done.stderr)
        assert "--env may be given only once" in done.stderr


def test_a_project_with_only_channels_is_not_served(tmp_path: Path) -> None:
    write_files(tmp_path, {"channels/hooks.yaml": "kind: webhook\nsecret_env: HOOKS_SECRET\n", "skills/x/SKILL.md":
                           "---\nname: x\ndescription: x\n---\nx\n"})
    for command in ("start", "dev"):
        done = run_flue(command, "--root", str(tmp_path), "--port", "0", timeout=60)
        assert done.returncode == 1, (command, done.stderr)
        assert "no agent or workflow files found" in done.stderr and "Traceback" not in done.stderr
    assert load_project(tmp_path).serving_errors[0].code == "project.empty"


@pytest.mark.parametrize(
    ("server_config", "headers", "expected"),
    [
        ("", {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https"}, "http://127.0.0.1:{port}"),
        ("server: {trust_forwarded: true}\n", {"X-Forwarded-Host": "agents.example:8443, proxy.internal",
                                              "X-Forwarded-Proto": "https"}, "https://agents.example:8443"),
        ("server: {trust_forwarded: true}\n", {"X-Forwarded-Host": "bad host/x"}, "http://127.0.0.1:{port}"),
        ("server: {public_url: 'https://flue.example.com/api/'}\n", {"X-Forwarded-Host": "evil.example"},
         "https://flue.example.com/api"),
    ],
)
async def test_stream_urls_follow_the_configured_public_url(
    tmp_path: Path, scripted_model_server: ScriptedModelServer, server_config: str, headers: dict[str, str],
    expected: str,
) -> None:
    scripted_model_server.add(reply("hi"))
    root = scratch_project(tmp_path, scripted_model_server.url, config=server_config)
    async with served(root) as s:
        base = expected.format(port=s.client.port)
        resp = await s.client.post("/workflows/echo", json={"a": 1}, headers=headers)
        body = await resp.json()
        assert resp.status == 202, body
        assert body["streamUrl"] == f"{base}/runs/{body['runId']}" == resp.headers["Location"]
        resp = await s.client.post("/agents/assistant/u%201", json={"message": "hi"}, headers=headers)
        body = await resp.json()
        assert body["streamUrl"] == f"{base}/agents/assistant/u%201" == resp.headers["Location"]


BROKEN_OBSERVER = '''
from flue import hookimpl


@hookimpl
def flue_observe(event, context):
    raise RuntimeError("this observer is broken")
'''

RECORDING_OBSERVER = '''
from flue import hookimpl

SEEN = []


@hookimpl
async def flue_observe(event, context):
    SEEN.append((event.type, dict(context)))
'''


async def test_a_failing_observer_plugin_does_not_silence_another_on_either_path(
    tmp_path: Path, scripted_model_server: ScriptedModelServer
) -> None:
    # both orders of registration: the broken plugin called first, and last
    for first, second in (("a_broken", "z_recorder"), ("z_broken", "a_recorder")):
        root = tmp_path / first
        files = {
            f"plugins/{first}.py": BROKEN_OBSERVER if "broken" in first else RECORDING_OBSERVER,
            f"plugins/{second}.py": BROKEN_OBSERVER if "broken" in second else RECORDING_OBSERVER,
        }
        scripted_model_server.add(reply("from the server"))
        scratch_project(root, scripted_model_server.url, files)
        recorder_name = first if "recorder" in first else second
        async with served(root) as s:
            resp = await s.client.post("/agents/assistant/u1?wait=result", json={"message": "hi"})
            assert resp.status == 200, await resp.text()
            recorder = s.runtime.project.pm.get_plugin(recorder_name)
            server_seen = list(recorder.SEEN)
        # the runtime path: every event of the submission reached the working observer
        types = [t for t, _ in server_seen]
        assert types[0] == "submission_admitted" and types[-1] == "submission_settled"
        assert "turn_request" in types and "operation" in types

        # the harness path (flue.init outside a runtime) with the same plugins
        project = load_project(root)
        recorder = project.pm.get_plugin(recorder_name)
        harness = await flue.init("assistant", project=project, providers={"scripted": ScriptedModel([reply("ok")])},
                                  scope="agents/assistant/u1")
        await (await harness.session()).prompt("hi")
        harness_seen = list(recorder.SEEN)
        assert [t for t, _ in harness_seen][-2:] == ["operation", "idle"]

        # one context shape: the same keys for the same kind of event, the same scope
        server_op = next(c for t, c in server_seen if t == "operation")
        harness_op = next(c for t, c in harness_seen if t == "operation")
        assert server_op["scope"] == harness_op["scope"] == "agents/assistant/u1"
        common = {"project", "scope", "agent_name", "harness", "session", "operation_id"}
        assert common <= set(server_op) and common <= set(harness_op)
        assert set(server_op) - {"instance_id", "submission_id"} == set(harness_op)
        assert server_op["project"].root == harness_op["project"].root == root.resolve()
