"""Project configuration: optional ``flue.yaml`` at the project root, and ``.env``.

``flue.yaml`` keys (unknown keys are errors naming the key path)::

    port: 3583                     # flue dev / flue start port (CLI --port wins)
    model: anthropic/claude-sonnet-4-6   # default model for agents without one (else $FLUE_MODEL)
    persistence:                   # where sessions, submissions, runs and streams live
      kind: sqlite                 # built in; plugins add others (e.g. postgres)
      path: .flue-state/state.db   # omit for in-memory; never under .flue/ or src/
    providers:                     # register or reconfigure model providers
      local:
        api: openai-completions    # or openai-responses, anthropic-messages
        base_url: http://127.0.0.1:8000/v1
        api_key_env: LOCAL_KEY     # or api_key: literal (keep secrets in .env)
        headers: {X-Team: core}
        via: litellm               # optional: call it through litellm, not the native client
        store_responses: false     # openai-responses: send store: true (Flue's storeResponses)
        cost: {input: 0.15, output: 0.6}   # USD per million tokens (default: litellm's catalog)
        context_window: 128000     # models: {<id>: {...}} overrides per model
    plugins:                       # per-plugin options; false disables a plugin
      my-plugin: {option: 1}
    admin:                         # read-only inspection routes (agents, runs); off unless set
      path: /admin
      auth: {bearer_env: FLUE_ADMIN_TOKEN}
    playground: true               # flue start serves the /_flue/ page (needs admin:, uses its token)
    coordinator:                   # how this process runs agent submissions
      lease: 30                    # seconds a claim lasts without renewal (crash takeover time)
      heartbeat: null              # seconds between lease renewals; null: a sixth of the lease
      replica_id: null             # this server's identity (env FLUE_REPLICA_ID); null: host, port and project
      concurrency: 64              # submissions run at once by this process
      poll: 0.5                    # seconds between claims when idle (other replicas' admissions)
      max_queued_per_instance: 100 # unsettled submissions one instance may hold; past it: 429
      max_queued: 10000            # unsettled submissions in the store; past it: 503
    limits:                        # sizes of what callers may send (a number, or "14 MiB", "500 kB")
      body: 64 MiB                 # one HTTP request body or WebSocket message
      message: 1 MiB               # characters of a prompt's text
      image: 14 MiB                # characters of one image's base64 data (Flue's limit)
      images: 16                   # images in one prompt
      payload: 16 MiB              # bytes of a workflow payload's JSON
    server:                        # connections of flue dev / flue start (nginx-like defaults)
      header_timeout: 60           # a request line and its headers must arrive within this (else 408)
      body_timeout: 60             # a body gets this many seconds, plus one per body_min_rate bytes (else 408)
      body_min_rate: 65536         # so a body sent at 1 byte/s is cut off, a 64 KiB/s upload never
      keepalive_timeout: 75        # an idle kept-alive connection is closed after this
      max_connections: null        # beyond this, new connections get a 503; null: 80% of the fd limit, at most 10000
      public_url: https://agents.example.com   # base of streamUrl/Location (default: from the request)
      trust_forwarded: false       # true: take scheme and host from X-Forwarded-Proto/-Host

String values may reference environment variables: ``${NAME}`` (an error
when unset) or ``${NAME:-default}``. ``.env`` in the project root is loaded by
the CLI before ``flue.yaml`` is read; ``--env FILE`` picks another. Values
already set in the shell win.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ByteSize, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from flue.authoring.agents import AuthSpec
from flue.authoring.source import load_yaml_mapping
from flue.diagnostics import Diagnostic, pydantic_diagnostics
from flue.usage import ModelPrices

CONFIG_NAMES = ("flue.yaml", "flue.yml")
DEFAULT_DEV_PORT = 3583
DEFAULT_START_PORT = 3000


ProviderApi = Literal["openai-completions", "openai-responses", "anthropic-messages"]


class ProviderModelConfig(BaseModel):
    """Per-model metadata under a provider's ``models:`` (wins over the provider's own values)."""

    model_config = ConfigDict(extra="forbid")
    context_window: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    cost: ModelPrices | None = None
    reasoning: bool | None = None


class ProviderConfig(BaseModel):
    """A model provider registration (``registerProvider``/``configureProvider``).

    ``api`` names the wire protocol; Flue's own aiohttp clients speak all three
    (:mod:`flue.models.registry` says which provider ids use which).
    ``via: litellm`` sends the provider's calls through litellm instead.
    ``store_responses`` sends ``store: true`` on the OpenAI Responses API (Flue's
    ``storeResponses``; off by default, so OpenAI keeps nothing).

    ``context_window``, ``max_tokens``, ``cost`` (per million tokens) and
    ``reasoning`` override what litellm's catalog says about the provider's models
    (:mod:`flue.models.catalog`); ``models: {<id>: {...}}`` overrides them per model.
    A model is sent a thinking level only when it reasons (catalog or ``reasoning: true``).
    """

    model_config = ConfigDict(extra="forbid")
    api: ProviderApi | None = None
    via: Literal["litellm"] | None = None
    store_responses: bool = False
    base_url: str | None = None
    api_key: str | None = None
    api_key_env: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    context_window: int | None = Field(None, gt=0)
    max_tokens: int | None = Field(None, gt=0)
    cost: ModelPrices | None = None
    reasoning: bool | None = None
    models: dict[str, ProviderModelConfig] = Field(default_factory=dict)

    def resolved_api_key(self, environ: dict[str, str] | None = None) -> str | None:
        env = os.environ if environ is None else environ
        if self.api_key_env:
            return env.get(self.api_key_env)
        return self.api_key


class PersistenceConfig(BaseModel):
    """``kind`` picks an adapter (``sqlite`` built in); other keys are its options."""

    model_config = ConfigDict(extra="allow")
    kind: str = "sqlite"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SQLiteOptions(BaseModel):
    """The options of the built-in ``sqlite`` kind (here, beside the config, so that checking
    them needs nothing above it; :mod:`flue.persistence.plugin` opens the adapter)."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = None


class CoordinatorConfig(BaseModel):
    """How a server process claims and runs durable agent submissions."""

    model_config = ConfigDict(extra="forbid")
    lease: float = Field(30.0, gt=0, le=3600, description="seconds a claim lasts without renewal")
    heartbeat: float | None = Field(
        None, gt=0, le=600, description="seconds between lease renewals (default: a sixth of the lease)"
    )
    replica_id: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._:@/-]{1,128}$",
        description="this server's identity, to take back its own leases at once after a restart "
        "(env FLUE_REPLICA_ID overrides; default: host name, port and project)",
    )

    @property
    def heartbeat_s(self) -> float:
        """Seconds between lease renewals: ``heartbeat``, or a sixth of the lease."""
        return self.heartbeat if self.heartbeat is not None else self.lease / 6

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> CoordinatorConfig:
        if self.heartbeat is not None and self.heartbeat >= self.lease:
            raise ValueError(f"coordinator.heartbeat ({self.heartbeat}) must be shorter than coordinator.lease")
        return self
    concurrency: int = Field(64, ge=1, le=10_000)
    poll: float = Field(0.5, gt=0, le=60)
    max_queued_per_instance: int = Field(
        100, ge=1, description="unsettled submissions one agent instance may hold; past it admission answers 429"
    )
    max_queued: int = Field(
        10_000, ge=1, description="unsettled submissions in the whole store; past it admission answers 503"
    )


class LimitsConfig(BaseModel):
    """Sizes of what callers may send (``limits:``), checked before anything is admitted.

    Over ``body`` a request gets 413 ``payload_too_large`` (aiohttp stops reading
    it); over ``payload`` a workflow invocation gets the same; a prompt whose text,
    images or image data are over their limits gets 400 ``invalid_request``
    naming the limit. Sizes are a number or a string such as ``"14 MiB"``."""

    model_config = ConfigDict(extra="forbid")
    body: ByteSize = Field(ByteSize(64 * 1024 * 1024), gt=0)
    message: ByteSize = Field(ByteSize(1024 * 1024), gt=0)
    image: ByteSize = Field(ByteSize(14 * 1024 * 1024), gt=0)
    images: int = Field(16, ge=0, le=1000)
    payload: ByteSize = Field(ByteSize(16 * 1024 * 1024), gt=0)


class AdminConfig(BaseModel):
    """The read-only admin mount (``flue.server.admin``): off unless ``auth`` names a token.

    ``flue dev`` serves it without a token when it listens on a loopback address."""

    model_config = ConfigDict(extra="forbid")
    path: str = Field("/admin", pattern=r"^/[A-Za-z0-9._~/-]*[A-Za-z0-9._~-]$")
    auth: AuthSpec

    @field_validator("auth")
    @classmethod
    def _needs_token(cls, v: AuthSpec) -> AuthSpec:
        if not v.bearer_env:
            raise ValueError("admin auth needs 'bearer_env': the environment variable holding the token")
        return v


class PlaygroundConfig(BaseModel):
    """The playground page at ``/_flue/`` (:mod:`flue.server.playground`).

    ``flue dev`` serves it whenever it serves the admin API (always on loopback);
    ``flue start`` only with ``playground: true`` (or ``{enabled: true}``), which
    needs ``admin:``: the page reads the admin API with that section's token."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = False


class ServerConfig(BaseModel):
    """How ``flue dev`` / ``flue start`` treat connections (defaults as a reverse proxy's),
    and how the server is reached from outside, for the absolute URLs it answers with
    (``streamUrl``, ``Location``).

    ``public_url`` (``https://host[:port][/path]``) replaces the request's scheme,
    host and port, and prefixes its path (for a proxy that mounts Flue under a
    path it strips). Without it the URLs come from the request: its ``Host``
    header, and, only when ``trust_forwarded`` is true (behind a proxy that sets
    them), ``X-Forwarded-Proto`` and ``X-Forwarded-Host`` (first values)."""

    model_config = ConfigDict(extra="forbid")
    public_url: str | None = Field(None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    trust_forwarded: bool = False
    header_timeout: float = Field(60.0, gt=0, le=3600, description="seconds to receive a request line and headers")
    body_timeout: float = Field(60.0, gt=0, le=3600, description="seconds a request body gets, plus its bytes / body_min_rate")
    body_min_rate: int = Field(65_536, ge=1, description="bytes per second a long body must keep up on average")
    keepalive_timeout: float = Field(75.0, ge=0, le=3600, description="seconds an idle kept-alive connection stays open")
    max_connections: int | None = Field(None, ge=1, description="open connections at once; null: from the fd limit")


class FlueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    _key_lines: dict[str, int] = PrivateAttr(default_factory=dict)  # top-level key -> line in flue.yaml
    port: int | None = Field(None, ge=1, le=65535)
    model: str | None = None
    persistence: PersistenceConfig = Field(default_factory=PersistenceConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    plugins: dict[str, dict[str, Any] | bool | None] = Field(default_factory=dict)
    coordinator: CoordinatorConfig = Field(default_factory=CoordinatorConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    server: ServerConfig = Field(default_factory=ServerConfig)
    admin: AdminConfig | None = None
    playground: PlaygroundConfig = Field(default_factory=PlaygroundConfig)

    @field_validator("persistence", mode="before")
    @classmethod
    def _persistence_shorthand(cls, v: Any) -> Any:
        return {"kind": v} if isinstance(v, str) else v

    def line_of(self, key: str) -> int | None:
        """The line of a top-level key in the flue.yaml this was loaded from (for diagnostics)."""
        return self._key_lines.get(key)

    def default_model(self) -> str | None:
        """The model of agents that name none: ``model:`` here, else ``$FLUE_MODEL`` (read now,
        so ``.env`` counts), else None. An agent's own ``model:`` and a call's ``model=`` win."""
        return self.model or os.environ.get("FLUE_MODEL") or None

    @field_validator("playground", mode="before")
    @classmethod
    def _playground_shorthand(cls, v: Any) -> Any:
        return {"enabled": v} if isinstance(v, bool) else v

    def plugin_options(self, name: str) -> dict[str, Any]:
        opts = self.plugins.get(name)
        return opts if isinstance(opts, dict) else {}


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MissingEnvVar(ValueError):
    pass


def interpolate_env(value: Any, environ: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ``${NAME}`` / ``${NAME:-default}`` in every string of a YAML tree."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise MissingEnvVar(f"'{path}' refers to ${{{name}}}, which is not set")

        return _ENV_REF.sub(sub, value)
    if isinstance(value, list):
        return [interpolate_env(v, env, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {k: interpolate_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    return value


def find_config_file(root: Path) -> Path | None:
    for name in CONFIG_NAMES:
        if (root / name).is_file():
            return root / name
    return None


def load_config(root: Path) -> tuple[FlueConfig, Path | None, list[Diagnostic]]:
    """Load ``flue.yaml``; on errors return defaults plus diagnostics."""
    path = find_config_file(root)
    if path is None:
        return FlueConfig(), None, []
    rel = path.name
    data, key_lines, diags = load_yaml_mapping(path, rel, code="config", what="flue.yaml")
    if data is None:
        return FlueConfig(), path, diags
    try:
        data = interpolate_env(data)
    except MissingEnvVar as exc:
        key = str(exc).split("'")[1].split(".")[0]
        return FlueConfig(), path, [
            Diagnostic(
                code="config.missing-env",
                file=rel,
                line=key_lines.get(key),
                message=str(exc),
                hint="set it in the shell or in .env, or give a default: ${NAME:-value}",
            )
        ]
    try:
        config = FlueConfig.model_validate(data)
    except Exception as exc:
        return FlueConfig(), path, pydantic_diagnostics(
            exc, file=rel, code_prefix="config", line_of=key_lines, schema=FlueConfig, docs="getting-started")
    config._key_lines = key_lines
    return config, path, _check_playground(config, rel, key_lines.get("playground"))


def _check_playground(config: FlueConfig, rel: str, line: int | None) -> list[Diagnostic]:
    if not config.playground.enabled or config.admin is not None:
        return []
    return [Diagnostic(
        code="config.playground-needs-admin", file=rel, line=line,
        message="'playground' is enabled but there is no admin: section: the page reads the admin API",
        hint="add admin: {auth: {bearer_env: FLUE_ADMIN_TOKEN}}; the playground asks for that token",
    )]


def load_env_file(root: Path, env_file: str | Path | None = None) -> Path | None:
    """Load ``.env`` (or ``env_file``) into ``os.environ`` without overriding the shell.

    An explicitly named file must exist.
    """
    from dotenv import load_dotenv

    if env_file is not None:
        path = Path(env_file)
        if not path.is_file():
            raise FileNotFoundError(f"--env file not found: {path}")
    else:
        path = root / ".env"
        if not path.is_file():
            return None
    load_dotenv(path, override=False)
    return path
