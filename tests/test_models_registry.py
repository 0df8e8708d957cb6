"""Provider registry: resolution precedence and how registrations become litellm calls."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixtures.harness.support import make_project

from flue.config import ProviderConfig
from flue.harness.errors import InvalidModelError, ProviderConfigError, UnknownProviderError
from flue.models.anthropic_messages import AnthropicMessagesProvider
from flue.models.base import ModelRequest
from flue.models.litellm_provider import LiteLLMProvider, import_litellm
from flue.models.registry import ModelRegistry, split_model
from flue.testing import ScriptedModel

PLUGIN = '''
from flue import hookimpl
from flue.config import ProviderConfig
from flue.testing import ScriptedModel

INPROC = ScriptedModel(name="inproc")


@hookimpl
def flue_model_providers():
    return {
        "inproc": INPROC,
        "gateway": ProviderConfig(api="openai-completions", base_url="http://plugin.invalid/v1"),
        "shadowed": ProviderConfig(api="openai-completions", base_url="http://plugin.invalid/v1"),
    }
'''


def request(model: str = "m", **kw) -> ModelRequest:
    provider, name = split_model(model)
    return ModelRequest(provider=provider, model=name, messages=[{"role": "user", "content": "hi"}], **kw)


@pytest.fixture(scope="module")
def litellm():
    return import_litellm()


def test_split_model():
    assert split_model("cloudflare/@cf/meta/llama-3") == ("cloudflare", "@cf/meta/llama-3")
    for bad in ("gpt-4o", "/x", "x/", None):
        with pytest.raises(InvalidModelError, match="provider/model"):
            split_model(bad)


def test_plugins_register_providers_and_flue_yaml_overrides_them(tmp_path):
    project = make_project(
        tmp_path,
        files={"plugins/providers.py": PLUGIN},
        config={"providers": {"shadowed": {"api": "anthropic-messages", "base_url": "http://yaml.invalid/v1"}}},
    )
    plugin = project.pm.get_plugin("providers")
    registry = ModelRegistry.for_project(project, {"code": ProviderConfig(api="openai-completions", base_url="http://c/v1")})

    resolved = registry.resolve("inproc/anything")
    assert resolved.provider is plugin.INPROC and resolved.model == "anything"
    assert registry.registration("gateway").base_url == "http://plugin.invalid/v1"
    assert registry.registration("shadowed").api == "anthropic-messages"  # flue.yaml wins over the plugin
    assert registry.registered == ["code", "gateway", "inproc", "shadowed"]
    # Unregistered ids: the known ones get a native client, the rest pass through to litellm's catalog.
    assert isinstance(registry.resolve("anthropic/claude-sonnet-4-5").provider, AnthropicMessagesProvider)
    catalog = registry.resolve("bedrock/anthropic.claude-3")
    assert isinstance(catalog.provider, LiteLLMProvider) and catalog.provider.config is None
    assert registry.resolve("bedrock/x").provider is catalog.provider  # one provider object per id


def test_registering_something_else_is_rejected():
    with pytest.raises(TypeError, match="ProviderConfig or an object with stream"):
        ModelRegistry({"bad": object()})
    registry = ModelRegistry({"dict": {"api": "openai-completions", "base_url": "http://x/v1"}})
    assert registry.registration("dict").api == "openai-completions"
    assert isinstance(ModelRegistry({"s": ScriptedModel()}).resolve("s/m").provider, ScriptedModel)


def test_openai_completions_registration(litellm, monkeypatch):
    monkeypatch.setenv("LOCAL_KEY", "sk-local")
    cfg = ProviderConfig(api="openai-completions", base_url="http://127.0.0.1:9/v1/", api_key_env="LOCAL_KEY",
                         headers={"X-Team": "core"})
    kw = LiteLLMProvider("local", cfg).call_kwargs(request("local/llama3:8b"), litellm)
    assert kw["model"] == "openai/llama3:8b"
    assert kw["api_base"] == "http://127.0.0.1:9/v1"
    assert kw["api_key"] == "sk-local"
    assert kw["extra_headers"] == {"X-Team": "core"}
    assert kw["stream"] is True and kw["stream_options"] == {"include_usage": True}
    monkeypatch.delenv("LOCAL_KEY")
    with pytest.raises(ProviderConfigError, match=r"\$LOCAL_KEY, which is not set"):
        LiteLLMProvider("local", cfg).call_kwargs(request("local/x"), litellm)


def test_anthropic_messages_registration_drops_v1(litellm):
    cfg = ProviderConfig(api="anthropic-messages", base_url="https://gw.example/v1", api_key="k")
    kw = LiteLLMProvider("gw", cfg).call_kwargs(request("gw/house-claude", thinking="medium"), litellm)
    assert kw["model"] == "anthropic/house-claude"
    assert kw["api_base"] == "https://gw.example"
    # litellm does not know this model as a reasoning model: an explicit budget is sent.
    assert kw["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert kw["allowed_openai_params"] == ["thinking"]
    assert kw["max_tokens"] > 8192


def test_catalog_pass_through_reconfiguration_and_unknown_ids(litellm):
    kw = LiteLLMProvider("anthropic").call_kwargs(request("anthropic/claude-sonnet-4-5", thinking="high"), litellm)
    assert kw["model"] == "anthropic/claude-sonnet-4-5" and "api_base" not in kw
    assert kw["reasoning_effort"] == "high"  # litellm maps it for models it knows
    gateway = ProviderConfig(base_url="https://gateway.example", headers={"X-Key": "1"})
    kw = LiteLLMProvider("openai", gateway).call_kwargs(request("openai/gpt-4o", thinking="off"), litellm)
    assert kw["model"] == "openai/gpt-4o" and kw["api_base"] == "https://gateway.example"
    assert "reasoning_effort" not in kw and "api_key" not in kw
    with pytest.raises(UnknownProviderError, match="register it under 'providers:' in flue.yaml"):
        LiteLLMProvider("nope").call_kwargs(request("nope/x"), litellm)
    with pytest.raises(ProviderConfigError, match="needs 'base_url:'"):
        LiteLLMProvider("mine", ProviderConfig(api="openai-completions")).call_kwargs(request("mine/x"), litellm)


def test_history_keeps_thinking_but_the_wire_does_not(litellm):
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "hmm"},
    ]
    req = ModelRequest(provider="openai", model="gpt-4o", messages=messages)
    kw = LiteLLMProvider("openai").call_kwargs(req, litellm)
    assert kw["messages"][1] == {"role": "assistant", "content": "a"}
    assert messages[1]["reasoning_content"] == "hmm"  # the caller's list is untouched


def test_the_harness_does_not_import_litellm_until_a_model_call():
    code = (
        "import sys, flue, flue.harness.harness, flue.harness.session, flue.models.registry, flue.agent, "
        "flue.testing, flue.testing.pytest_plugin\n"
        "flue.init, flue.create_agent, flue.Session\n"
        "from flue.models.registry import ModelRegistry\n"
        "ModelRegistry({'x': {'api': 'openai-completions', 'base_url': 'http://x/v1'}}).resolve('x/m')\n"
        "print('litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_calls_litellm_tells_plugin_models_from_litellm_ones(tmp_path, monkeypatch):
    from pathlib import Path

    from flue.models.registry import calls_litellm
    from flue.project import load_project

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.delenv("FLUE_MODEL", raising=False)
    assert not calls_litellm(load_project(repo))  # the example project's offline plugin model
    monkeypatch.setenv("FLUE_MODEL", "anthropic/claude-sonnet-4-6")
    assert not calls_litellm(load_project(repo))  # a native client
    monkeypatch.setenv("FLUE_MODEL", "bedrock/anthropic.claude-3-haiku")
    assert calls_litellm(load_project(repo))
