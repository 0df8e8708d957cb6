"""The playground page (``/_flue/``) in a real browser, against a real ``flue dev`` (issue 15).

Debian's ``chromium`` driven by Playwright for Python (``.ci/run`` installs the
package; Playwright's own browser download is never used), on a copy of the
example project. Its support agent talks to the scripted model server (one
``glob`` call, then an answer streamed in small pieces; then the triage
workflow's two steps); everything else keeps the example's offline model. The test opens the page, chats with the agent
(streamed answer, tool card with its arguments and result, event timeline),
runs the triage workflow from its schema form and replays the run from the
runs list, then breaks an agent file (the page shows the failed reload's
diagnostic with its hint), fixes it with a changed description and waits for
the page to show the change after ``flue dev`` reloads. A screenshot goes to ``tests/artifacts/`` (docs/playground.png
is one). A second test runs ``flue start`` with ``playground: true``: the page asks for the
admin token before it shows anything.

The HTTP-level checks (``flue start`` serves the page only when flue.yaml
enables it, and the data behind it only with the admin token) are in
test_playground_http.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

pytestmark = pytest.mark.slow
pytest_plugins = ["flue.testing.pytest_plugin"]

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ANSWER = "See **Billing and invoices**: they are under `Settings > Billing`. Happy to help further!"
SHOWN = "See Billing and invoices: they are under Settings > Billing. Happy to help further!"  # as Markdown
DRAFT = "Sorry about the double charge: the billing article explains refunds."
WAIT_MS = 10_000  # every wait for the page is bounded by this

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is in the test extra")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)


def example_copy(root: Path, model_url: str) -> Path:
    """The example project (agents, workflows, skills, channels, sandbox, its offline model plugin),
    with the support agent (and so the triage workflow) on the scripted model server."""
    root.mkdir()
    for name in ("agents", "workflows", "skills", "channels", "sandbox"):
        shutil.copytree(REPO / name, root / name)
    (root / "plugins").mkdir()
    shutil.copy(REPO / "plugins" / "offline_model.py", root / "plugins")
    config = (REPO / "flue.yaml").read_text()
    config += f"\nproviders:\n  scripted: {{api: openai-completions, base_url: {model_url}, api_key: playground-key}}\n"
    (root / "flue.yaml").write_text(config)
    support = root / "agents" / "support.md"
    support.write_text(support.read_text().replace("---\n", "---\nmodel: scripted/chat\n", 1))
    return root


async def test_the_playground_in_a_browser(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    scripted_model_server.add(
        calls(tool_call("glob", {"pattern": "articles/*.md"})),
        reply(ANSWER, chunk_size=6, delay=0.03),  # many text_delta events, some time apart
        # the triage workflow's steps (its agent is support): a structured result, then a draft
        calls(tool_call("final_result", {"topic": "billing", "urgency": "normal"})),
        reply(DRAFT),
    )
    root = example_copy(tmp_path / "example", scripted_model_server.url)
    env = {"FLUE_MODEL": "offline/rules"}  # the example's default, whatever the shell says
    async with FlueServerProcess(root, command="dev", env=env, ready_timeout=30) as server, \
            playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            expect = playwright_api.expect
            await page.goto(f"{server.url}/_flue/")

            # the project as flue info sees it
            sidebar = page.locator("#sidebar")
            await expect(sidebar.locator(".nav-item[data-name=support]")).to_be_visible()
            await expect(page.locator("#main")).to_contain_text("No diagnostics")
            await expect(page.locator("#main")).to_contain_text("greet")  # skills
            await expect(page.locator("#main")).to_contain_text("slack")  # channels

            # chat: the answer streams in, the glob call is a card with its arguments and result
            await sidebar.locator(".nav-item[data-name=support]").click()
            await page.locator(".composer-input").fill("Where do I find my invoices?")
            await page.locator(".composer-input").press("Enter")
            await expect(page.locator(".msg.user .bubble")).to_have_text("Where do I find my invoices?")
            card = page.locator("details.tool[data-tool=glob]")
            await expect(card.locator(".badge")).to_contain_text("done")
            await card.locator("summary").click()
            await expect(card.locator(".tool-body")).to_contain_text('"pattern": "articles/*.md"')
            await expect(card.locator(".tool-body")).to_contain_text("billing-and-invoices.md")
            answer = page.locator(".msg.assistant .bubble").last
            await expect(answer).to_have_text(SHOWN)
            await expect(answer.locator("strong")).to_have_text("Billing and invoices")
            await expect(answer.locator("code")).to_have_text("Settings > Billing")
            await expect(page.locator(".transcript .meta").last).to_contain_text("scripted/chat")  # usage line
            timeline = page.locator(".timeline")
            await expect(timeline).to_contain_text("submission_settled")
            deltas = await timeline.locator(".ev-text_delta .ev-type").first.inner_text()
            assert deltas.startswith("text_delta ×") and int(deltas.split("×")[1]) > 5, deltas  # streamed, not one piece
            await page.screenshot(path=str(tmp_path / "chat.png"))

            # a workflow from its payload schema's form, its events and result
            await sidebar.locator(".nav-item[data-name=triage]").click()
            await page.locator("#field-message").fill("I was charged twice on my last invoice")
            await page.get_by_role("button", name="Run").click()
            result = page.locator(".result-body")
            await expect(result).to_contain_text('"topic": "billing"')
            await expect(page.locator(".timeline")).to_contain_text("run_end")
            await expect(result).to_contain_text(DRAFT)
            await expect(page.locator("details.tool[data-tool=final_result]")).to_be_visible()

            # the run in the recent runs list, replayed from the start of its stream
            run = sidebar.locator("#runs .nav-item").first
            await expect(run).to_contain_text("triage")
            await run.click()
            await expect(page.locator("#main .result-body")).to_contain_text('"urgency": "normal"')
            await expect(page.locator("#main .timeline")).to_contain_text("run_start")

            # edit an agent: flue dev reloads, the page redraws without a reload of its own
            await sidebar.locator(".nav-item[data-name=assistant]").click()
            await expect(page.locator(".view-head h1")).to_have_text("assistant")
            agent = root / "agents" / "assistant.md"
            original = agent.read_text()
            agent.write_text(original.replace("tools: []", "tools: []\ncolour: blue"))  # an unknown key: an error
            banner = page.locator("#banner .banner")
            await expect(banner).to_contain_text("could not reload", timeout=15_000)
            first = banner.locator(".diagnostic").first
            await expect(first).to_contain_text("agents/assistant.md:5")
            await expect(first).to_contain_text("unknown key 'colour'")
            await expect(first.locator(".hint")).to_contain_text("remove it")
            agent.write_text(original.replace("A concise, friendly assistant", "A pirate-voiced assistant"))
            await expect(page.locator(".view-head .description")).to_have_text("A pirate-voiced assistant", timeout=15_000)
            await expect(sidebar.locator(".nav-item[data-name=assistant]")).to_contain_text("A pirate-voiced assistant")
            await expect(page.locator("#toast")).to_contain_text("Project reloaded")
            await expect(banner).to_have_count(0)

            ARTIFACTS.mkdir(exist_ok=True)
            await sidebar.locator(".nav-item[data-name=support]").click()
            await expect(page.locator(".msg.assistant .bubble").last).to_have_text(SHOWN)  # history read from -1
            await page.locator("details.tool[data-tool=glob] summary").click()
            await page.screenshot(path=str(ARTIFACTS / "playground.png"))
            assert errors == [], errors
        finally:
            await browser.close()


async def test_flue_start_asks_for_the_admin_token(tmp_path: Path, scripted_model_server: ScriptedModelServer) -> None:
    """Under flue start (playground: true) the page gets nothing without the admin token: it asks,
    keeps it in the tab, and then shows the project and talks to the agents."""
    root = example_copy(tmp_path / "example", scripted_model_server.url)
    with (root / "flue.yaml").open("a") as f:
        f.write("admin: {auth: {bearer_env: PLAYGROUND_TOKEN}}\nplayground: true\n")
    env = {"FLUE_MODEL": "offline/rules", "PLAYGROUND_TOKEN": "playground-secret-1"}
    async with FlueServerProcess(root, env=env, ready_timeout=30) as server, \
            playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = await browser.new_page()
            page.set_default_timeout(WAIT_MS)
            expect = playwright_api.expect
            await page.goto(f"{server.url}/_flue/")
            dialog = page.locator("#token-dialog")
            await expect(dialog).to_be_visible()
            await expect(page.locator("#sidebar .nav-item")).to_have_count(0)
            await dialog.locator("input[name=token]").fill("playground-secret-1")
            await dialog.get_by_role("button", name="Use it").click()
            await page.locator("#sidebar .nav-item[data-name=assistant]").click()
            await page.locator(".composer-input").fill("A greeting for Bo.")
            await page.locator(".composer-input").press("Enter")
            await expect(page.locator(".msg.assistant .bubble")).to_have_text("Hello, Bo! It is a real pleasure to meet you.")
            assert await page.evaluate("sessionStorage.getItem('flue-token:admin')") == "playground-secret-1"
        finally:
            await browser.close()
