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
    assert registry.registered == ["code", "gateway", "inproc", "offline", "shadowed"]  # offline: built in
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
    with pytest.raises(ProviderConfigError, match=r"LOCAL_KEY is not set: add it to .env or the shell"):
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
    assert python_output(code).strip() == "False"


def python_output(code: str) -> str:
    """What ``code`` prints in a fresh interpreter (for what a process imports)."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


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


# -- routing: native clients for the known protocols and ids, litellm for the rest ------------------

ROUTES = [
    # id, registration, client class name, api, base URL
    ("openai", None, "OpenAIResponsesProvider", "openai-responses", "https://api.openai.com/v1"),
    ("anthropic", None, "AnthropicMessagesProvider", "anthropic-messages", "https://api.anthropic.com"),
    ("openrouter", None, "OpenAICompletionsProvider", "openai-completions", "https://openrouter.ai/api/v1"),
    ("groq", None, "OpenAICompletionsProvider", "openai-completions", "https://api.groq.com/openai/v1"),
    ("ollama", None, "OpenAICompletionsProvider", "openai-completions", "http://127.0.0.1:11434/v1"),
    ("openai", {"base_url": "https://gw.example/v1"}, "OpenAIResponsesProvider", "openai-responses",
     "https://gw.example/v1"),
    ("openai", {"api": "openai-completions"}, "OpenAICompletionsProvider", "openai-completions",
     "https://api.openai.com/v1"),
    ("house", {"api": "anthropic-messages", "base_url": "http://h/v1"}, "AnthropicMessagesProvider",
     "anthropic-messages", "http://h/v1"),
    ("house", {"api": "openai-responses", "base_url": "http://h/v1"}, "OpenAIResponsesProvider", "openai-responses",
     "http://h/v1"),
    ("openai", {"via": "litellm"}, "LiteLLMProvider", "litellm", None),
    ("house", {"api": "openai-completions", "base_url": "http://h/v1", "via": "litellm"}, "LiteLLMProvider",
     "openai-completions", None),
    ("bedrock", None, "LiteLLMProvider", "litellm", None),
    ("vertex_ai", None, "LiteLLMProvider", "litellm", None),
    ("gemini", None, "LiteLLMProvider", "litellm", None),
    ("azure", {"base_url": "https://x.openai.azure.com"}, "LiteLLMProvider", "litellm", None),
    ("cohere", None, "LiteLLMProvider", "litellm", None),
]


@pytest.mark.parametrize(("provider_id", "registration", "cls", "api", "base_url"), ROUTES)
def test_routing(provider_id, registration, cls, api, base_url):
    registry = ModelRegistry({provider_id: registration} if registration else {})
    resolved = registry.resolve(f"{provider_id}/some-model")
    assert type(resolved.provider).__name__ == cls
    assert resolved.api == api  # what events carry
    assert getattr(resolved.provider, "base_url", None) == base_url
    assert registry.uses_litellm(provider_id) is (cls == "LiteLLMProvider")


def test_native_models_get_catalog_metadata_without_litellm():
    code = (
        "import sys\n"
        "from flue.models.registry import ModelRegistry\n"
        "from flue.models.base import ModelRequest\n"
        "registry = ModelRegistry()\n"
        "for spec in ('openai/gpt-5', 'anthropic/claude-sonnet-4-5', 'groq/llama-3.3-70b-versatile'):\n"
        "    r = registry.resolve(spec)\n"
        "    req = ModelRequest(provider=r.provider_id, model=r.model, messages=[{'role': 'user', 'content': 'hi'}])\n"
        "    r.provider.body(req, r.info)\n"
        "    print(r.api, r.info.context_window, r.info.reasoning)\n"
        "print('litellm' in sys.modules)"
    )
    lines = python_output(code).split("\n")
    assert lines[0] == "openai-responses 272000 True"
    assert lines[1] == "anthropic-messages 200000 True"
    assert lines[2].startswith("openai-completions ")
    assert lines[3] == "False"


def test_missing_api_keys_name_the_env_var(monkeypatch):
    from flue.harness.errors import MissingApiKeyError

    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GROQ_API_KEY", "HOUSE_KEY"):
        monkeypatch.delenv(name, raising=False)
    registry = ModelRegistry({"house": {"api": "openai-completions", "base_url": "http://h/v1",
                                        "api_key_env": "HOUSE_KEY"}, "local": {"api": "openai-completions",
                                                                              "base_url": "http://l/v1"}})
    for provider_id, env in (("openai", "OPENAI_API_KEY"), ("anthropic", "ANTHROPIC_API_KEY"),
                             ("groq", "GROQ_API_KEY"), ("house", "HOUSE_KEY")):
        with pytest.raises(MissingApiKeyError) as info:
            registry.provider(provider_id).api_key()
        assert str(info.value) == f"{env} is not set: add it to .env or the shell (the API key of provider '{provider_id}')"
    assert registry.provider("local").api_key() is None  # a self-hosted server without a key
    assert registry.provider("ollama").api_key() is None
    monkeypatch.setenv("HOUSE_KEY", "sk-house")
    assert registry.provider("house").api_key() == "sk-house"
    monkeypatch.setenv("TOGETHERAI_API_KEY", "sk-t")  # the second name a provider's key may have
    assert registry.provider("together").api_key() == "sk-t"


def test_thinking_levels_follow_what_the_catalog_says_a_model_accepts():
    from flue.models.catalog import ModelInfo
    from flue.models.thinking import anthropic_thinking, openai_effort

    gpt5 = ModelInfo(reasoning=True, efforts={"none": False, "minimal": True, "xhigh": False})
    gpt52 = ModelInfo(reasoning=True, efforts={"none": True, "minimal": False, "xhigh": True})
    assert [openai_effort(level, gpt5) for level in ("off", "minimal", "xhigh")] == ["minimal", "minimal", "high"]
    assert [openai_effort(level, gpt52) for level in ("off", "minimal", "xhigh")] == ["none", "low", "xhigh"]
    assert openai_effort("high", ModelInfo(reasoning=False)) is None

    adaptive = ModelInfo(reasoning=True, adaptive_thinking=True, efforts={"max": True}, max_tokens=128000)
    fields, max_tokens = anthropic_thinking("xhigh", adaptive, 32000)
    assert fields == {"thinking": {"type": "adaptive", "display": "summarized"}, "output_config": {"effort": "max"}}
    assert max_tokens == 32000
    assert anthropic_thinking("minimal", adaptive, 32000)[0]["output_config"] == {"effort": "low"}
    assert anthropic_thinking("off", ModelInfo(reasoning=True, thinking_default="on"), 8192)[0] == {
        "thinking": {"type": "disabled"}}
    assert anthropic_thinking("off", ModelInfo(reasoning=True, thinking_default="always"), 8192)[0] == {}
    # a budget that does not fit the model's output limit is squeezed, leaving room for the answer
    small = ModelInfo(reasoning=True, max_tokens=16000)
    assert anthropic_thinking("high", small, 16000) == ({"thinking": {"type": "enabled", "budget_tokens": 14976}},
                                                       16000)
