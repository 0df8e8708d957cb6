"""The generic ``webhook`` channel over HTTP: forged requests never dispatch, valid ones dispatch once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fixtures.server.support import scratch_project, served
from flue_channels.testing import dumps, webhook_signature

from flue.testing import reply
from flue.testing.model_server import ScriptedModelServer

pytest_plugins = ["flue.testing.pytest_plugin"]

SECRET = "acme-hmac-secret"
TOKEN = "acme-bearer-token"

ACME = """\
kind: webhook
secret_env: FLUE_ACME_SECRET
signature_header: X-Acme-Signature
signature_prefix: "sha256="
encoding: base64
timestamp_header: X-Acme-Timestamp
tolerance: 120
id_header: X-Acme-Delivery
event_field: type
events:
  order.created:
    agent: intake
    id: "acme-{{ payload.account }}"
    input: {order: "{{ payload.order }}", total: "{{ payload.total }}"}
"""

BEARER = """\
kind: webhook
bearer_env: FLUE_ACME_TOKEN
path: /inbox
events:
  "*": {agent: intake, id: "inbox"}
"""


def signed(body: bytes, delivery: str, *, secret: str = SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if ts is None else ts)
    sig = webhook_signature(secret, f"{stamp}.".encode() + body, encoding="base64")
    return {"Content-Type": "application/json", "X-Acme-Timestamp": stamp, "X-Acme-Delivery": delivery,
            "X-Acme-Signature": f"sha256={sig}"}


def order(n: int) -> bytes:
    return dumps({"type": "order.created", "account": n % 10, "order": f"o-{n}", "total": n * 10})


@pytest.fixture
async def acme(tmp_path: Path, scripted_model_server: ScriptedModelServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FLUE_ACME_SECRET", SECRET)
    monkeypatch.setenv("FLUE_ACME_TOKEN", TOKEN)
    root = scratch_project(tmp_path, scripted_model_server.url, {
        "agents/intake.md": "---\ndescription: takes orders in\ntools: []\n---\nLog the order.\n",
        "channels/acme.yaml": ACME, "channels/bearer.yaml": BEARER,
    })
    async with served(root) as srv:
        yield srv, scripted_model_server


@pytest.mark.slow
async def test_a_thousand_forged_requests_are_refused(acme) -> None:
    srv, model = acme
    stale = int(time.time()) - 10 * 60

    def forged(i: int) -> tuple[bytes, dict[str, str]]:
        body = order(i)
        delivery = f"forged-{i}"
        match i % 5:
            case 0:  # signed with another secret
                return body, signed(body, delivery, secret="guessed")
            case 1:  # a valid signature over other bytes
                return body, signed(order(i + 1), delivery)
            case 2:  # a correctly signed but stale request (a replay)
                return body, signed(body, delivery, ts=stale)
            case 3:  # no signature at all
                return body, {k: v for k, v in signed(body, delivery).items() if k != "X-Acme-Signature"}
            case _:  # garbage in the signature header
                return body, {**signed(body, delivery), "X-Acme-Signature": "sha256=!!not-base64!!"}

    statuses: list[int] = []
    for start in range(0, 1000, 100):
        batch = [forged(i) for i in range(start, start + 100)]
        resps = await asyncio.gather(*(srv.client.post("/channels/acme/webhook", data=b, headers=h) for b, h in batch))
        statuses += [r.status for r in resps]
        assert all([await r.read() == b"" for r in resps])
    assert statuses == [401] * 1000
    store = srv.runtime.stores.submissions
    assert [i for i in range(1000) if await store.get_by_dispatch_id(f"acme:forged-{i}") is not None] == []
    assert model.requests == []


@pytest.mark.slow
async def test_a_hundred_valid_requests_are_dispatched_once_each(acme) -> None:
    srv, model = acme
    model.add(*[reply("noted")] * 100)
    requests = [(order(n), signed(order(n), f"delivery-{n}")) for n in range(100)]
    for attempt in range(2):  # the provider delivers everything twice (a retry storm)
        resps = await asyncio.gather(*(srv.client.post("/channels/acme/webhook", data=b, headers=h) for b, h in requests))
        assert [r.status for r in resps] == [200] * 100, attempt
    store = srv.runtime.stores.submissions
    subs = [await store.get_by_dispatch_id(f"acme:delivery-{n}") for n in range(100)]
    assert all(s is not None for s in subs)
    assert len({s.submission_id for s in subs}) == 100
    assert sorted(s.instance for s in subs) == sorted(f"agents/intake/acme-{n % 10}" for n in range(100))
    assert subs[42].input == {"order": "o-42", "total": 420}
    for instance in {s.instance for s in subs}:
        assert len(await store.list_for_instance(instance)) == 10
    done = await asyncio.gather(*(srv.runtime.coordinator.wait(s.submission_id, timeout=60) for s in subs))
    assert {d.status for d in done} == {"completed"}
    assert len(model.requests) == 100


async def test_bearer_protected_endpoints_and_unmatched_events(acme) -> None:
    srv, model = acme
    model.add(reply("got it"))
    resp = await srv.client.post("/channels/bearer/inbox", json={"hello": 1}, headers={"Authorization": "Bearer nope"})
    assert resp.status == 401
    resp = await srv.client.post("/channels/bearer/inbox", json={"hello": 1})
    assert resp.status == 401
    resp = await srv.client.post("/channels/bearer/inbox", json={"hello": 1}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert (resp.status, await resp.read()) == (200, b"")
    subs = await srv.runtime.stores.submissions.list_for_instance("agents/intake/inbox")
    assert [s.input for s in subs] == [{"hello": 1}]  # the default input: the payload

    # a signed event no rule names is acknowledged, not dispatched
    body = dumps({"type": "order.cancelled", "account": 1})
    resp = await srv.client.post("/channels/acme/webhook", data=body, headers=signed(body, "d-cancel"))
    assert (resp.status, await resp.read()) == (200, b"")
    assert await srv.runtime.stores.submissions.get_by_dispatch_id("acme:d-cancel") is None
    big = b"{" + b" " * (1024 * 1024) + b"}"
    resp = await srv.client.post("/channels/acme/webhook", data=big, headers=signed(big, "d-big"))
    assert resp.status == 413
