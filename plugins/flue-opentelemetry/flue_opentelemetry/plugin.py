"""The ``opentelemetry`` plugin: Flue's events as OpenTelemetry spans and metrics, over OTLP/HTTP.

::

    # flue.yaml (every key optional; the standard OTEL_* variables work too)
    plugins:
      opentelemetry:
        endpoint: http://otel-collector:4318   # else OTEL_EXPORTER_OTLP_ENDPOINT
        headers: {x-honeycomb-team: "${HONEYCOMB_KEY}"}
        service_name: support-agents           # else OTEL_SERVICE_NAME, else "flue"
        capture_content: false                 # prompts, answers, tool arguments and results

On only when an OTLP endpoint is configured (or ``enabled: true``): installing
the distribution changes nothing until then. It uses two hooks:
``flue_configure`` reads the options (no OpenTelemetry import: ``flue info``
stays quick) and ``flue_observe`` projects every event
(:mod:`flue_opentelemetry.projection`), starting the SDK on the first one
(:mod:`flue_opentelemetry.sdk`).
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import unquote

from flue.hookspecs import hookimpl
from flue.redaction import declare
from flue_opentelemetry.options import Options

# the events the projection uses (flue_opentelemetry.projection._HANDLERS; kept here so that
# the hot path imports no OpenTelemetry code before the plugin is configured)
HANDLED = frozenset({
    "run_start", "run_resume", "run_end", "submission_admitted", "submission_settled", "operation_start",
    "operation", "turn_start", "turn_request", "message_end", "turn", "tool_start", "tool", "task_start", "task",
    "compaction_start", "compaction", "log",
})

NAME = "opentelemetry"
HEADER_VARS = ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_METRICS_HEADERS")

_state: dict[str, Any] = {"options": None, "active": False, "telemetry": None}


def _declare_secrets(options: Options) -> None:
    """Exporter headers carry vendors' keys: Flue scrubs them from events, logs and answers."""
    values = list(options.headers.values())
    for var in HEADER_VARS:
        for pair in os.environ.get(var, "").split(","):
            if "=" in pair:
                values.append(unquote(pair.split("=", 1)[1].strip()))
    for value in values:
        if value:
            declare(value=value)


@hookimpl
def flue_configure(config: Any) -> None:
    options = Options.model_validate(config.plugin_options(NAME))
    _declare_secrets(options)
    _state["options"], _state["active"] = options, options.active()
    telemetry = _state["telemetry"]
    if telemetry is not None:  # flue dev reloaded the project: the SDK stays, the content policy follows
        telemetry.projection.capture_content = options.content()
        telemetry.projection.max_content_length = options.max_content_length


@hookimpl
def flue_observe(event: Any) -> None:
    if not _state["active"]:
        return
    telemetry = _state["telemetry"]
    if telemetry is None:
        from flue_opentelemetry.sdk import start

        _state["active"] = False  # a failing start is reported once (by Flue), not retried per event
        telemetry = _state["telemetry"] = start(_state["options"])
        _state["active"] = True
    telemetry.projection.handle(event)


class _Skipped:
    """``flue_observe.skip_types``: everything while the plugin is off; when on, the events
    that make no span, span event or metric (text deltas above all), and ``turn_request``
    (the whole model input, built for observers only) unless contents are captured."""

    def __contains__(self, event_type: object) -> bool:
        if not _state["active"]:
            return True
        if event_type == "turn_request":
            return not _state["options"].content()
        return event_type not in HANDLED


flue_observe.skip_types = _Skipped()  # type: ignore[attr-defined]


def flush(timeout_ms: int = 10_000) -> None:
    """Export what is batched now (for ``flue.init()`` scripts that exit through ``os._exit``)."""
    if _state["telemetry"] is not None:
        _state["telemetry"].flush(timeout_ms)
