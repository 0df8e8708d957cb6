"""A project whose models all have native clients never imports litellm: not in ``flue info``,
not in a ``flue start`` server that serves a prompt (litellm's import costs seconds and memory).

The server reports on itself through a tool of a project plugin: the scripted model calls
``litellm_loaded`` after its first (native) round trip, and the tool's answer, which the
server sends back to the model, is whether ``litellm`` is in the server's ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import aiohttp
from fixtures.durability import write_files

from flue.testing import calls, reply, tool_call
from flue.testing.model_server import ScriptedModelServer
from flue.testing.server_process import FlueServerProcess

PROBE_PLUGIN = '''
import sys

from flue import hookimpl, tool


@hookimpl
def flue_tools():
    @tool
    async def litellm_loaded() -> str:
        "Whether this process has imported litellm."
        return str("litellm" in sys.modules)

    return [litellm_loaded]
'''


def native_project(root: Path, model_url: str) -> Path:
    return write_files(root, {
        "flue.yaml": (
            "model: scripted/chat\n"
            "providers:\n"
            f"  scripted: {{api: openai-completions, base_url: {model_url}, api_key: test-key}}\n"
            f"  claude: {{api: anthropic-messages, base_url: {model_url}}}\n"
        ),
        "plugins/probe.py": PROBE_PLUGIN,
        "agents/probe.md": "---\ndescription: reports on its server\nhttp: true\ntools: [litellm_loaded]\n---\nProbe.\n",
        # catalog models with native clients (never called here: no keys needed)
        "agents/writer.md": "---\ndescription: writes\nmodel: anthropic/claude-sonnet-4-5\ntools: []\n---\nWrite.\n",
        "agents/coder.md": "---\ndescription: codes\nmodel: openai/gpt-5\ntools: []\n---\nCode.\n",
        "agents/house.md": "---\ndescription: house model\nmodel: claude/house\ntools: []\n---\nHouse.\n",
    })


def test_flue_info_of_a_native_project_does_not_import_litellm(tmp_path):
    root = native_project(tmp_path / "project", "http://127.0.0.1:9/v1")
    code = (
        "import sys; from flue.cli import main\n"
        "try:\n    main(['info', '--root', sys.argv[1]])\nexcept SystemExit:\n    pass\n"
        "from flue.models.registry import calls_litellm\nfrom flue.project import load_project\n"
        "print('calls_litellm', calls_litellm(load_project(sys.argv[1])))\n"
        "print('LITELLM' if 'litellm' in sys.modules else 'CLEAN')"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert "probe" in proc.stdout and lines[-2:] == ["calls_litellm False", "CLEAN"], proc.stdout + proc.stderr


async def test_flue_start_serves_a_native_prompt_without_importing_litellm(tmp_path):
    async with ScriptedModelServer([calls(tool_call("litellm_loaded", id="probe_1")), reply("Checked.")]) as model:
        root = native_project(tmp_path / "project", model.url)
        async with FlueServerProcess(root) as server, aiohttp.ClientSession() as http:
            async with http.post(f"{server.url}/agents/probe/i1?wait=result", json={"message": "check"}) as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["result"]["text"] == "Checked."
    first, second = model.records
    assert first.path == "/v1/chat/completions" and first.headers["authorization"] == "Bearer test-key"
    # the tool ran in the server after a native round trip: litellm was not there
    assert second.body["messages"][-1] == {"role": "tool", "tool_call_id": "probe_1", "content": "False"}
