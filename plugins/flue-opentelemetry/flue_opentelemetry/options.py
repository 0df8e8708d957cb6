"""``plugins: {opentelemetry: {...}}`` in ``flue.yaml``, over the standard ``OTEL_*`` variables.

Every option may be left out: the OpenTelemetry SDK then reads its own
variables (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_HEADERS``,
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_BSP_*``,
``OTEL_METRIC_EXPORT_INTERVAL``, ...). An option that is given wins over its variable.
This module imports no OpenTelemetry code: ``flue info`` stays quick.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
# the GenAI instrumentations' opt-in for message contents
CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


def _true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = Field(None, description="default: on when an OTLP endpoint is configured")
    endpoint: str | None = Field(None, description="OTLP/HTTP base URL; /v1/traces and /v1/metrics are appended")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every export (a vendor's key)")
    timeout: float | None = Field(None, gt=0, le=300, description="seconds per export request")
    service_name: str | None = None
    resource_attributes: dict[str, str | int | float | bool] = Field(default_factory=dict)
    traces: bool = True
    metrics: bool = True
    capture_content: bool | None = Field(None, description="put prompts, answers, tool arguments and results, "
                                         "payloads and log messages on spans (default: off)")
    max_content_length: int = Field(8192, ge=64, le=1_000_000, description="characters per content attribute")

    def active(self, environ: Mapping[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        if _true(env.get("OTEL_SDK_DISABLED")) or self.enabled is False:
            return False
        if not (self.traces_on(env) or self.metrics_on(env)):
            return False
        return bool(self.enabled or self.endpoint or any(env.get(name) for name in ENDPOINT_VARS))

    def traces_on(self, environ: Mapping[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        return self.traces and env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"

    def metrics_on(self, environ: Mapping[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        return self.metrics and env.get("OTEL_METRICS_EXPORTER", "otlp").strip().lower() != "none"

    def content(self, environ: Mapping[str, str] | None = None) -> bool:
        env = os.environ if environ is None else environ
        return self.capture_content if self.capture_content is not None else _true(env.get(CAPTURE_VAR))
