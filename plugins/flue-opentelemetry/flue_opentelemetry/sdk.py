"""The OpenTelemetry SDK of this process: a tracer and a meter exporting over OTLP/HTTP.

Made once, on the first event after the project enabled the plugin (so ``flue
info`` and ``flue --help`` never import the SDK). Spans go through a batch
processor and metrics through a periodic reader, both exporting from their own
threads; the SDK's providers flush and shut down at interpreter exit
(``shutdown_on_exit``), which a stopped ``flue start`` (SIGTERM) reaches.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from flue_opentelemetry.options import Options
from flue_opentelemetry.projection import Instruments, Projection

SCOPE = "flue_opentelemetry"


@dataclass
class Telemetry:
    projection: Projection
    tracer_provider: Any
    meter_provider: Any

    def flush(self, timeout_ms: int = 10_000) -> None:
        for provider in (self.tracer_provider, self.meter_provider):
            if provider is not None:
                provider.force_flush(timeout_ms)


def start(options: Options) -> Telemetry:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource

    from flue.version import __version__

    resource = Resource.create({
        **options.resource_attributes,
        "service.name": options.service_name or os.environ.get("OTEL_SERVICE_NAME") or "flue",
    })
    exporter_options = {k: v for k, v in {"headers": options.headers or None, "timeout": options.timeout}.items()
                        if v is not None}

    def endpoint(signal: str) -> str | None:  # None: the exporter reads OTEL_EXPORTER_OTLP_*ENDPOINT
        return f"{options.endpoint.rstrip('/')}/v1/{signal}" if options.endpoint else None

    tracer_provider = meter_provider = None
    tracer: Any = trace.NoOpTracer()
    if options.traces_on():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint("traces"), **exporter_options)))
        tracer = tracer_provider.get_tracer(SCOPE, __version__)
    instruments = None
    if options.metrics_on():
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint("metrics"), **exporter_options))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        instruments = Instruments(meter_provider.get_meter(SCOPE, __version__))
    projection = Projection(tracer, instruments, capture_content=options.content(),
                            max_content_length=options.max_content_length)
    return Telemetry(projection, tracer_provider, meter_provider)
