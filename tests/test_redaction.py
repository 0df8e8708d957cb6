"""``flue.redaction``: which values are a project's secrets, and each place they are scrubbed.

The end-to-end checks (real servers, real model clients) are in test_hardening_secrets.py;
these pin the module's rules and its hooks one by one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.server.support import write_files

import flue
from flue import redaction
from flue.channels.http import Secret
from flue.events import Operation, TextDelta, observe
from flue.harness.errors import ModelCallError
from flue.project import load_project
from flue.server.errors import internal_error
from flue.server.websocket import error_frame

PROVIDER_KEY = "pk-0123456789abcdef"


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    """Each test starts with no project and no declared secrets, and leaves none behind."""
    def reset() -> None:
        redaction._declared_env.clear()
        redaction._declared_values.clear()
        redaction.use_project(None)

    reset()
    yield
    reset()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in {
        "PROVIDER_KEY": PROVIDER_KEY, "ADMIN_TOKEN": "admin-token-value", "AGENT_TOKEN": "agent-token-value",
        "FLOW_TOKEN": "flow-token-value", "SIGNING": "signing-secret-value", "BOT": "xoxb-bot-token-value",
        "PLUGIN_SECRET": "plugin-secret-value", "MCP_TOKEN": "mcp-token-value", "SHORT": "abc1234",
        "OPENAI_API_KEY": "sk-openai-value-xyz", "UNRELATED": "not-a-secret-at-all",
    }.items():
        monkeypatch.setenv(name, value)
    return monkeypatch


def test_the_secrets_of_a_project(tmp_path: Path, env: pytest.MonkeyPatch) -> None:
    root = write_files(tmp_path, {
        "flue.yaml": (
            "admin: {auth: {bearer_env: ADMIN_TOKEN}}\n"
            "plugins: {someplugin: {auth: {token_env: PLUGIN_SECRET}}}\n"
            "providers:\n"
            "  a: {api: openai-completions, base_url: 'http://127.0.0.1:9', api_key_env: PROVIDER_KEY,\n"
            "      headers: {Authorization: 'Bearer hdr-token-value', X-Team: core}}\n"
            "  b: {api: openai-completions, base_url: 'http://127.0.0.1:9', api_key: literal-key-value}\n"
            "  c: {api: openai-completions, base_url: 'http://127.0.0.1:9', api_key_env: SHORT}\n"
        ),
        "agents/a.md": (
            "---\nmodel: a/m\nhttp: {auth: {bearer_env: AGENT_TOKEN}}\n"
            "mcp: {gh: {url: 'http://127.0.0.1:9/mcp', headers: {Authorization: 'Bearer ${MCP_TOKEN}'}}}\n---\nHi.\n"
        ),
        "workflows/w.py": "http = {'auth': {'bearer_env': 'FLOW_TOKEN'}}\n\n\nasync def run(ctx):\n    return 1\n",
        "channels/c.yaml": "kind: nosuchkind\nsigning_secret_env: SIGNING\nbot_token_env: BOT\n",
    })
    values = redaction.secret_values(load_project(root))
    assert {
        PROVIDER_KEY, "admin-token-value", "agent-token-value", "flow-token-value", "signing-secret-value",
        "xoxb-bot-token-value", "plugin-secret-value", "literal-key-value", "Bearer hdr-token-value",
        "hdr-token-value", "Bearer mcp-token-value", "mcp-token-value", "sk-openai-value-xyz",
    } <= values
    # shorter than 8 characters ("core", "abc1234", "Bearer") is never a secret; unnamed variables neither
    assert not {"core", "abc1234", "Bearer", "not-a-secret-at-all"} & values


def test_scrub_copies_only_what_changes(env: pytest.MonkeyPatch) -> None:
    data = {"a": ["plain", {"deep": f"key={PROVIDER_KEY}!"}], "b": {"untouched": [1, 2.5, None]}, PROVIDER_KEY: 1}
    assert redaction.scrub(data) is data  # nothing known yet: the same object back, for free
    redaction.declare(env="PROVIDER_KEY")
    clean = redaction.scrub(data)
    assert clean == {"a": ["plain", {"deep": "key=[redacted]!"}], "b": {"untouched": [1, 2.5, None]}, "[redacted]": 1}
    assert data["a"][1]["deep"] == f"key={PROVIDER_KEY}!"  # the input is never changed
    assert clean["b"] is data["b"]  # what had no secret is shared, not copied
    unrelated = {"x": ["nothing here"] * 3}
    assert redaction.scrub(unrelated) is unrelated
    assert redaction.scrub(("t", PROVIDER_KEY)) == ("t", "[redacted]")


def test_a_longer_secret_containing_another_is_replaced_whole() -> None:
    redaction.declare(value="secret-one")
    redaction.declare(value="secret-one-and-more")
    assert redaction.scrub("x secret-one-and-more y secret-one") == "x [redacted] y [redacted]"


def test_refresh_reads_the_environment_again(env: pytest.MonkeyPatch) -> None:
    redaction.declare(env="ADMIN_TOKEN")
    env.setenv("ADMIN_TOKEN", "changed-token-value")
    assert redaction.scrub("changed-token-value") == "changed-token-value"  # read when declared
    redaction.refresh()
    assert redaction.scrub("changed-token-value admin-token-value") == "[redacted] admin-token-value"


def test_channel_secrets_declare_themselves(env: pytest.MonkeyPatch) -> None:
    Secret(env="SIGNING")
    Secret(value="given-in-code-secret")
    assert redaction.scrub("signing-secret-value given-in-code-secret") == "[redacted] [redacted]"


def test_every_log_record_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    redaction.declare(value=PROVIDER_KEY)
    caplog.set_level(logging.INFO)
    logging.getLogger("flue.models.deep.child").warning("body: %s", {"key": PROVIDER_KEY})
    logging.getLogger("aiohttp.access").info(f"GET /agents/a/b?token={PROVIDER_KEY}")
    try:
        raise RuntimeError(f"refused {PROVIDER_KEY}")
    except RuntimeError:
        logging.getLogger("someone.else").exception("failed")
    assert PROVIDER_KEY not in caplog.text
    assert "body: {'key': '[redacted]'}" in caplog.text and "?token=[redacted]" in caplog.text
    assert "RuntimeError: refused [redacted]" in caplog.text
    plain = logging.getLogger("flue").makeRecord("flue", logging.INFO, "f", 1, "n=%d", (3,), None)
    assert plain.args == (3,)  # records without a secret are left alone


def test_events_and_observers(env: pytest.MonkeyPatch) -> None:
    redaction.declare(env="PROVIDER_KEY")
    event = Operation(operation_kind="prompt", duration_ms=1.0, is_error=True,
                      error={"name": "RuntimeError", "message": f"bad {PROVIDER_KEY}"})
    assert event.wire()["error"]["message"] == "bad [redacted]"
    seen = redaction.observed(event)
    assert type(seen) is Operation and seen.error["message"] == "bad [redacted]"
    assert event.error["message"] == f"bad {PROVIDER_KEY}"  # the emitter's object is left as it was
    plain = TextDelta(text="nothing")
    assert redaction.observed(plain) is plain

    got: list = []
    unsubscribe = observe(lambda e, ctx: got.append(e))
    try:
        flue.events._notify_global(event)
    finally:
        unsubscribe()
    assert got[0].error["message"] == "bad [redacted]"


def test_envelopes_and_socket_frames(env: pytest.MonkeyPatch) -> None:
    redaction.declare(env="PROVIDER_KEY")
    envelope = internal_error(dev=f"RuntimeError: {PROVIDER_KEY}").envelope(dev_mode=True).wire()
    assert envelope["error"]["dev"] == "RuntimeError: [redacted]"
    frame = error_frame({"type": "internal_error", "message": PROVIDER_KEY, "details": ""}, "r1")
    assert frame["error"]["message"] == "[redacted]"


async def test_a_plugin_providers_own_exception_becomes_our_message(caplog: pytest.LogCaptureFixture) -> None:
    class Upstream(Exception):
        status_code = 401

    class Provider:
        async def stream(self, request):
            raise Upstream(f"Incorrect API key provided: {PROVIDER_KEY}")
            yield  # pragma: no cover

    session = await (await flue.init(flue.create_agent(name="x", model=Provider()))).session()
    with caplog.at_level(logging.WARNING, logger="flue.models"), pytest.raises(ModelCallError) as info:
        await session.prompt("hi")
    message = str(info.value)
    assert PROVIDER_KEY not in message and info.value.status == 401
    assert "HTTP 401 from provider" in message and "Upstream" in message and "server log" in message
    assert f"Incorrect API key provided: {PROVIDER_KEY}" in caplog.text  # not a known secret: logged as is


def test_an_events_stored_text_is_its_wire_form_and_holds_no_secret(env: pytest.MonkeyPatch) -> None:
    import json

    from flue.persistence.kit import dumps

    redaction.declare(value='quote"and\\backslash-secret')  # JSON escapes it: the text search cannot see it
    redaction.declare(env="PROVIDER_KEY")
    for message in (f"bad {PROVIDER_KEY}", 'bad quote"and\\backslash-secret', "nothing secret"):
        event = Operation(operation_kind="prompt", duration_ms=1.0, is_error=True,
                          error={"name": "RuntimeError", "message": message, "detail": None})
        wire = event.wire()
        stored = dumps(wire)
        assert json.loads(stored) == wire  # the stream stores exactly the wire form
        assert PROVIDER_KEY not in stored and "backslash-secret" not in stored
        assert wire["error"]["message"] == ("nothing secret" if "nothing" in message else "bad [redacted]")
        assert wire["error"]["detail"] is None  # nulls inside values stay
