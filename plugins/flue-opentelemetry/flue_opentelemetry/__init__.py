"""OpenTelemetry for Flue: spans and metrics of workflow runs, agent submissions, operations,
model calls and tool calls, exported over OTLP/HTTP. The plugin is :mod:`flue_opentelemetry.plugin`."""

__version__ = "0.1.0"
