"""Local fakes of the Slack and GitHub Web APIs, and request signers, for tests.

Real aiohttp servers on ``127.0.0.1`` (a free port) speaking the part of each
API the channels use; point a channel's ``api_url`` at them::

    async with FakeSlack(token="xoxb-test") as slack:
        ...  # channels/slack.yaml: api_url: <slack.api_url>
        assert slack.messages[0]["thread_ts"] == "1700000000.000100"

``fail_next(n, status=..., error=...)`` makes the next ``n`` calls fail (to
exercise retries). A call with another token is refused like the real API
(Slack: 200 ``{"ok": false, "error": "invalid_auth"}``; GitHub: 401).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import time
from typing import Any

from aiohttp import web

from flue.testing.loopback import LoopbackServer


class _FakeApi(LoopbackServer):
    def __init__(self, token: str):
        self.token = token
        self.calls: list[dict[str, Any]] = []  # every request: path, auth ok, body
        self._failures: list[tuple[int, dict[str, Any], dict[str, str]]] = []
        self._ids = itertools.count(1)

    def fail_next(self, times: int = 1, *, status: int = 500, error: str = "internal_error",
                  headers: dict[str, str] | None = None) -> None:
        self._failures += [(status, {"ok": False, "error": error, "message": error}, headers or {})] * times

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _failure(self) -> web.Response | None:
        if not self._failures:
            return None
        status, body, headers = self._failures.pop(0)
        return web.json_response(body, status=status, headers=headers)


class FakeSlack(_FakeApi):
    """``POST /api/chat.postMessage``; ``messages`` holds what was posted."""

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [c["body"] for c in self.calls if c["ok"]]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat.postMessage", self._post_message)

    async def _post_message(self, request: web.Request) -> web.Response:
        body = await request.json() if request.content_type == "application/json" else dict(await request.post())
        ok = self._authorized(request)
        failure = self._failure() if ok else None
        self.calls.append({"path": request.path, "ok": ok and failure is None, "body": body})
        if not ok:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if failure is not None:
            return failure
        ts = f"{int(time.time())}.{next(self._ids):06d}"
        return web.json_response({"ok": True, "channel": body.get("channel"), "ts": ts,
                                  "message": {"text": body.get("text"), "thread_ts": body.get("thread_ts")}})


class FakeGitHub(_FakeApi):
    """``POST /repos/{owner}/{repo}/issues/{number}/comments``; ``comments`` holds what was posted."""

    @property
    def api_url(self) -> str:
        return self.base

    @property
    def comments(self) -> list[dict[str, Any]]:
        return [c for c in self.calls if c["ok"]]

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/repos/{owner}/{repo}/issues/{number}/comments", self._comment)

    async def _comment(self, request: web.Request) -> web.Response:
        body = await request.json()
        ok = self._authorized(request)
        failure = self._failure() if ok else None
        m = request.match_info
        self.calls.append({"ok": ok and failure is None, "owner": m["owner"], "repo": m["repo"],
                           "issue": int(m["number"]), "body": body.get("body")})
        if not ok:
            return web.json_response({"message": "Bad credentials"}, status=401)
        if failure is not None:
            return failure
        cid = next(self._ids)
        url = f"https://github.com/{m['owner']}/{m['repo']}/issues/{m['number']}#issuecomment-{cid}"
        return web.json_response({"id": cid, "html_url": url, "body": body.get("body")}, status=201)


# -- signers --------------------------------------------------------------------------------


def slack_headers(secret: str, body: bytes, *, timestamp: int | None = None,
                  content_type: str = "application/json") -> dict[str, str]:
    """The headers Slack sends with ``body``, signed with ``secret``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"Content-Type": content_type, "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def github_headers(secret: str, body: bytes, *, event: str, delivery: str) -> dict[str, str]:
    """The headers GitHub sends with ``body`` for ``event`` (``X-Hub-Signature-256``)."""
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": f"sha256={digest}"}


def webhook_signature(secret: str, content: bytes, *, algorithm: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(secret.encode(), content, getattr(hashlib, algorithm)).digest()
    return digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
