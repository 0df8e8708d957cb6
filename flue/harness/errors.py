"""Typed errors of the harness and the model layer, in one place.

Every message says what went wrong *and what to set* to fix it. All derive
from :class:`FlueHarnessError` except :class:`OperationCancelledError`, which
is an :class:`asyncio.CancelledError` so that task cancellation keeps its
meaning for asyncio (``TaskGroup``, ``wait_for``, ``task.cancelled()``).

This module imports nothing heavy: ``flue.models`` and the CLI may use it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from flue.errors import FlueError, serialize_error


class FlueHarnessError(FlueError):
    """Base class for harness errors; ``to_dict()`` is what events carry. Each class's
    ``error_type`` is Flue's wire type where Flue has one (``flue-reference.md`` 8.6)."""

    error_type = "operation_failed"


# -- models ---------------------------------------------------------------------


class ModelNotConfiguredError(FlueHarnessError):
    """No model for an operation: the agent says ``model: false`` or names none."""

    error_type = "model_not_configured"

    def __init__(self, agent: str, *, explicit_false: bool = False):
        self.agent = agent
        if explicit_false:
            msg = (
                f"agent '{agent}' has 'model: false', so every call must name a model: "
                "pass model='provider/model' to prompt()/skill()/task()"
            )
        else:
            msg = (
                f"agent '{agent}' has no model: set 'model: provider/model' in its frontmatter, "
                "'model:' in flue.yaml or FLUE_MODEL in the environment, or pass model='provider/model' to the call"
            )
        super().__init__(msg)


class InvalidModelError(FlueHarnessError):
    """A model string that is not ``provider/model``."""

    error_type = "model_not_configured"

    def __init__(self, model: Any):
        super().__init__(
            f"model {model!r} must look like 'provider/model' (for example 'anthropic/claude-sonnet-4-6')"
        )


class UnknownProviderError(FlueHarnessError):
    """A ``provider/model`` whose provider is neither registered nor in litellm's catalog."""

    error_type = "model_not_configured"

    def __init__(self, provider: str, registered: list[str], *, close: str | None = None):
        """``close``: the known provider the name is a clear typo of (the raiser looks it up)."""
        self.provider = provider
        super().__init__(
            f"unknown model provider '{provider}'{f' (did you mean {close!r}?)' if close else ''}: "
            "register it under 'providers:' in flue.yaml "
            f"(api: openai-completions, openai-responses or anthropic-messages, base_url: ...) or from a plugin's "
            f"flue_model_providers hook (registered: {', '.join(sorted(registered)) or 'none'})"
        )


class ProviderConfigError(FlueHarnessError):
    """A provider registration that cannot be used as written."""

    error_type = "invalid_provider_registration"


class InvalidThinkingLevelError(FlueHarnessError, ValueError):
    error_type = "invalid_thinking_level"

    def __init__(self, level: Any):
        super().__init__(
            f"thinking level {level!r} is not one of off, minimal, low, medium, high, xhigh: "
            "set 'thinking:' in the agent file or pass thinking= with one of them"
        )


class ModelCallError(FlueHarnessError):
    """The model call failed (network, authentication, bad request...).

    The message is Flue's own words, never the provider's: a provider may echo
    request data, the API key included, and this message reaches callers (HTTP
    envelopes, ``turn``/``operation``/``submission_settled``/``run_end`` events).
    With ``detail`` the message is ``detail``; without it, it names the cause's
    class, its HTTP status (a ``status_code`` or ``status`` attribute) and the
    provider, and the cause's text goes to the ``flue.models`` log only. A cause
    that is one of Flue's own errors keeps its text (caller-safe by contract).
    ``status`` is the provider's HTTP status, if any."""

    error_type = "operation_failed"

    def __init__(self, model: str, cause: BaseException | None = None, *, detail: str | None = None,
                 status: int | None = None, provider: str | None = None):
        self.model = model
        self.status = status if status is not None else _http_status(cause)
        self.provider = provider
        if detail is None:
            detail = _cause_detail(model, cause, self.status, provider)
        super().__init__(f"model call to '{model}' failed: {detail}")


def _http_status(cause: BaseException | None) -> int | None:
    for name in ("status_code", "status"):
        value = getattr(cause, name, None)
        if isinstance(value, int) and 100 <= value <= 599:
            return value
    return None


def _cause_detail(model: str, cause: BaseException | None, status: int | None, provider: str | None) -> str:
    """What a caller learns of a provider object's own exception: its class and status; its text
    (which may quote the provider's answer) is logged."""
    if cause is None:
        return "unknown error"
    name = type(cause).__name__
    if isinstance(cause, FlueError):
        return f"{name}: {cause}"
    logging.getLogger("flue.models").warning("model call to %s failed: %s: %s", model, name, cause)
    where = f"HTTP {status} from " if status is not None else f"{name} from "
    who = provider or model.split("/", 1)[0]
    return f"{where}provider '{who}' ({name}; the provider's answer is in the server log)"


class ModelAuthError(ModelCallError):
    """The provider refused the credentials (HTTP 401/403)."""


class ModelRateLimitError(ModelCallError):
    """The provider kept answering 429 (rate limit or quota) after the retries."""


class ModelUnavailableError(ModelCallError):
    """The provider kept failing (HTTP 5xx, overloaded) after the retries."""


class ModelConnectionError(ModelCallError):
    """The provider could not be reached, or the connection broke mid-stream."""


class MissingApiKeyError(ProviderConfigError):
    """A provider that needs an API key has none."""

    error_type = "model_not_configured"

    def __init__(self, provider: str, env_var: str, *, model: str | None = None):
        self.provider = provider
        self.env_var = env_var
        self.model = model
        which = f"provider '{provider}'" + (f", model '{model}'" if model else "")
        super().__init__(f"{env_var} is not set: add it to .env or the shell (the API key of {which})")


# -- the tool loop ----------------------------------------------------------------


class TurnLimitError(FlueHarnessError):
    error_type = "operation_failed"

    def __init__(self, max_turns: int):
        self.max_turns = max_turns
        super().__init__(
            f"the operation stopped after {max_turns} turns without finishing: raise 'max_turns:' in the "
            "agent file (or pass max_turns= to the call) if the work really needs more"
        )


class ResultValidationError(FlueHarnessError):
    """The model's structured result kept failing validation."""

    error_type = "operation_failed"

    def __init__(self, attempts: int, last_error: str):
        self.attempts = attempts
        self.last_error = last_error
        super().__init__(
            f"the model did not return a valid result after {attempts} attempts; last problem:\n{last_error}\n"
            "simplify the result schema, make the prompt more explicit, or pass result_retries= for more attempts"
        )


class OperationCancelledError(asyncio.CancelledError):
    """The operation was cancelled: aborted (``handle.abort()``, a ``signal=`` that fired)
    or its asyncio task was cancelled.

    The model stream was closed and running tools were cancelled before this
    was raised; the session history is left as it was before the operation.
    ``reason`` is what ``abort(reason)`` was given (``None`` for a plain task
    cancellation). It *is* an ``asyncio.CancelledError``, so ``except
    asyncio.CancelledError`` and ``task.cancelled()`` keep working; catch it
    around an operation you abort yourself. (Python 3.11's ``asyncio.timeout()``
    only converts a plain ``CancelledError`` into ``TimeoutError``; use
    ``asyncio.wait_for`` around an operation for a timeout.)
    """

    error_type = "operation_cancelled"

    def __init__(self, operation_id: str | None, kind: str, session: str | None, *, reason: Any = None):
        self.operation_id = operation_id
        self.kind = kind
        self.session = session
        self.reason = reason
        what = f"{kind} operation {operation_id}" if operation_id else f"{kind} call"
        where = f" in session '{session}'" if session else ""
        why = f" ({_reason_text(reason)})" if reason is not None else ""
        tail = ": the model stream was closed and running tools were stopped" if kind != "shell" else ""
        super().__init__(f"{what}{where} was cancelled{why}{tail}")

    def to_dict(self) -> dict[str, Any]:
        return serialize_error(self)


def _reason_text(reason: Any) -> str:
    if isinstance(reason, BaseException):
        return str(reason) or type(reason).__name__
    return str(reason)


# -- tools, skills, subagents -------------------------------------------------------


class UnknownToolError(FlueHarnessError):
    error_type = "tool_not_registered"

    def __init__(self, name: str, agent: str, available: list[str]):
        super().__init__(
            f"agent '{agent}' lists tool '{name}', which does not exist: define it in a plugin's flue_tools "
            f"hook or remove it from 'tools:' (available: {', '.join(sorted(available)) or 'none'})"
        )


class ToolNameCollisionError(FlueHarnessError):
    error_type = "tool_name_conflict"

    def __init__(self, name: str, why: str):
        super().__init__(f"tool name '{name}' {why}: rename the tool")


class UnknownSkillError(FlueHarnessError):
    error_type = "skill_not_registered"

    def __init__(self, name: str, available: list[str]):
        self.name = name
        super().__init__(
            f"unknown skill '{name}': add it to the agent's 'skills:' (from skills/{name}/SKILL.md) or put it "
            f"in the workspace at .agents/skills/{name}/SKILL.md (available: {', '.join(sorted(available)) or 'none'})"
        )


class SkillArgumentsError(FlueHarnessError):
    error_type = "skill_arguments_invalid"

    def __init__(self, name: str, problem: str):
        super().__init__(f"skill '{name}' could not be rendered with the given args: {problem}: pass it in args=")


class InstructionsTemplateError(FlueHarnessError):
    error_type = "operation_failed"

    def __init__(self, agent: str, problem: str):
        super().__init__(
            f"agent '{agent}': its instructions could not be rendered ({problem}); they may use "
            "agent.name, agent.description, cwd and date; write literal braces inside {% raw %}...{% endraw %}"
        )


class UnknownRoleError(FlueHarnessError):
    error_type = "role_not_found"

    def __init__(self, name: str, agent: str, available: list[str]):
        self.name = name
        super().__init__(
            f"agent '{agent}' has no role '{name}': declare it under 'roles:' in the agent file "
            f"(or roles= in Python) (available: {', '.join(sorted(available)) or 'none'})"
        )


class UnknownSubagentError(FlueHarnessError):
    error_type = "subagent_not_declared"

    def __init__(self, name: str, agent: str, available: list[str]):
        super().__init__(
            f"agent '{agent}' has no subagent '{name}': add it to 'subagents:' in the agent file "
            f"(available: {', '.join(sorted(available)) or 'none'})"
        )


class AgentResolutionError(FlueHarnessError):
    """An agent that cannot be found or whose profile chain is broken."""

    error_type = "agent_not_found"


# -- sandbox and sessions -----------------------------------------------------------


class SandboxUnavailableError(FlueHarnessError):
    error_type = "sandbox_operation_unsupported"

    def __init__(self, agent: str, why: str):
        super().__init__(
            f"agent '{agent}' has no sandbox ({why}): shell and file operations need one; install a plugin "
            "providing the sandbox kind or set 'sandbox:' to a registered kind"
        )


class UnknownSandboxKindError(FlueHarnessError):
    error_type = "sandbox_operation_unsupported"

    def __init__(self, kind: str, available: list[str]):
        super().__init__(
            f"no plugin provides sandbox kind '{kind}': set 'sandbox:' to one of "
            f"{', '.join(sorted(available)) or 'none'} or install the plugin that provides it"
        )


class SessionNotFoundError(FlueHarnessError, KeyError):
    error_type = "session_not_found"

    def __init__(self, name: str):
        FlueHarnessError.__init__(self, f"session '{name}' does not exist: use harness.sessions.create('{name}') "
                                  f"or harness.session('{name}') to get-or-create it")

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class SessionDeletedError(FlueHarnessError):
    """The session was deleted: before this operation, or while it ran (deletion wins:
    the operation stops and records nothing)."""

    error_type = "session_deleted"

    def __init__(self, name: str, where: str = ""):
        self.name = name
        super().__init__(
            f"session '{name}'{where} was deleted; its history is gone and this operation was not run "
            f"to completion: open it again with harness.session('{name}') (or send a new prompt) to start afresh"
        )


class SessionExistsError(FlueHarnessError):
    error_type = "session_already_exists"

    def __init__(self, name: str):
        super().__init__(f"session '{name}' already exists: use harness.sessions.get('{name}') or harness.session('{name}')")
