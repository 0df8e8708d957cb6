"""History messages as events carry them: Flue's message and content-block shapes.

History is OpenAI chat format (``user``/``assistant``/``tool`` messages with
``tool_calls``); events carry Flue's (pi-ai's) shapes:

- ``{role: "user", content: [{type: "text", text} | {type: "image", data, mimeType}]}``
- ``{role: "assistant", content: [{type: "thinking", thinking, thinkingSignature?} |
  {type: "text", text} | {type: "toolCall", id, name, arguments}]}``, plus
  ``api``, ``provider``, ``model``, ``usage`` and ``stopReason`` on agent messages
- ``{role: "toolResult", toolCallId, toolName, content: [{type: "text", text}], isError}``

``llm_message`` gives the plain ``LlmMessage`` (``turn_request`` input,
``turn`` output); ``agent_message`` adds a ``timestamp`` and, for the
assistant, the model and usage (``message_start``/``message_end``,
``turn_messages``, ``agent_end``). Image data is always redacted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from flue.events import IMAGE_DATA_OMITTED, now_ms
from flue.usage import NO_USAGE, Usage

# OpenAI finish reasons -> Flue's stop reasons.
STOP_REASONS = {"stop": "stop", "end_turn": "stop", "length": "length", "max_tokens": "length",
                "tool_calls": "toolUse", "tool_use": "toolUse", "function_call": "toolUse",
                "content_filter": "error", "error": "error", "aborted": "aborted"}


@dataclass(frozen=True)
class ModelRef:
    """The model behind a turn: what results (``model: {provider, id}``) and events name."""

    provider: str
    id: str
    api: str = "custom"

    def wire(self) -> dict[str, str]:
        return {"provider": self.provider, "id": self.id}


def stop_reason(finish: str | None, *, has_calls: bool = False) -> str:
    if finish is None:
        return "toolUse" if has_calls else "stop"
    return STOP_REASONS.get(finish, "toolUse" if has_calls else "stop")


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url") or "")
    mime = url[5:].split(";", 1)[0] if url.startswith("data:") else "image/*"
    return {"type": "image", "data": IMAGE_DATA_OMITTED, "mimeType": mime or "image/*"}


def _user_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content or []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "text":
            blocks.append({"type": "text", "text": str(part.get("text") or "")})
        elif part.get("type") in ("image_url", "image"):
            blocks.append(_image_block(part) if part.get("type") == "image_url"
                          else {"type": "image", "data": IMAGE_DATA_OMITTED, "mimeType": part.get("mimeType")})
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw) if isinstance(raw, str) and raw.strip() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _assistant_blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    signed = message.get("thinking_blocks") or []
    if signed:
        for block in signed:
            if block.get("type") == "redacted_thinking":
                blocks.append({"type": "thinking", "thinking": "", "redacted": True})
            else:
                out = {"type": "thinking", "thinking": str(block.get("thinking") or "")}
                if block.get("signature"):
                    out["thinkingSignature"] = block["signature"]
                blocks.append(out)
    elif message.get("reasoning_content"):
        blocks.append({"type": "thinking", "thinking": str(message["reasoning_content"])})
    content = message.get("content")
    if isinstance(content, str) and content:
        blocks.append({"type": "text", "text": content})
    elif isinstance(content, list):
        blocks += [{"type": "text", "text": str(p.get("text") or "")} for p in content
                   if isinstance(p, dict) and p.get("type") == "text"]
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        blocks.append({"type": "toolCall", "id": call.get("id"), "name": fn.get("name"),
                       "arguments": _arguments(fn.get("arguments"))})
    return blocks


def tool_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text") or "") for p in content or [] if isinstance(p, dict))


def llm_message(message: dict[str, Any], *, tool_names: dict[str, str] | None = None,
                errors: set[str] | None = None) -> dict[str, Any] | None:
    """One history message as an ``LlmMessage`` (None for system messages)."""
    role = message.get("role")
    if role == "user":
        return {"role": "user", "content": _user_blocks(message.get("content"))}
    if role == "assistant":
        return {"role": "assistant", "content": _assistant_blocks(message)}
    if role == "tool":
        call_id = str(message.get("tool_call_id") or "")
        return {
            "role": "toolResult", "toolCallId": call_id, "toolName": (tool_names or {}).get(call_id, ""),
            "content": [{"type": "text", "text": tool_text(message.get("content"))}],
            "isError": call_id in (errors or ()),
        }
    return None


def tool_names_of(messages: list[dict[str, Any]]) -> dict[str, str]:
    """Tool call id -> tool name, from the assistant messages' ``tool_calls``."""
    names: dict[str, str] = {}
    for message in messages:
        for call in message.get("tool_calls") or []:
            names[str(call.get("id"))] = str((call.get("function") or {}).get("name") or "")
    return names


def llm_messages(messages: list[dict[str, Any]], errors: set[str] | None = None) -> list[dict[str, Any]]:
    names = tool_names_of(messages)
    return [m for msg in messages if (m := llm_message(msg, tool_names=names, errors=errors)) is not None]


def agent_message(
    message: dict[str, Any], *, model: ModelRef | None = None, usage: Usage | None = None,
    stop: str | None = None, tool_names: dict[str, str] | None = None, errors: set[str] | None = None,
) -> dict[str, Any]:
    """A history message as an ``AgentMessage``: the LlmMessage with a timestamp, and for the
    assistant the model that wrote it, its usage and stop reason."""
    out = llm_message(message, tool_names=tool_names, errors=errors) or {"role": message.get("role"), "content": []}
    if out["role"] == "assistant" and model is not None:
        out.update(api=model.api, provider=model.provider, model=model.id,
                   usage=(usage or NO_USAGE).wire(), stopReason=stop or "stop")
    out["timestamp"] = now_ms()
    return out


def tool_result(output: str, *, details: Any = None) -> dict[str, Any]:
    """A tool event's ``result``: Flue's ``{content: [{type: "text", text}], details?}``."""
    result: dict[str, Any] = {"content": [{"type": "text", "text": output}]}
    if details is not None:
        result["details"] = details
    return result


def llm_tools(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI function specs -> Flue's ``{name, description, parameters}``."""
    out = []
    for spec in specs:
        fn = spec.get("function") or spec
        out.append({"name": fn.get("name"), "description": fn.get("description") or "",
                    "parameters": fn.get("parameters") or {}})
    return out
