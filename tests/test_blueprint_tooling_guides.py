"""The tooling guides' plugins, as the guides write them, through their own end-to-end tests
(`flue run` exporting to a local OTLP/HTTP collector / a local stand-in for Sentry's envelope endpoint)."""

from __future__ import annotations

from blueprint_support import guide_module

_otel = guide_module("tooling/opentelemetry", "tests/test_opentelemetry_tracing.py")
_sentry = guide_module("tooling/sentry", "tests/test_sentry_errors.py")

collector, sentry = _otel.collector, _sentry.sentry
test_opentelemetry_workflow_runs_become_spans_with_their_outcome = _otel.test_workflow_runs_become_spans_with_their_outcome
test_sentry_a_failed_run_is_reported_and_a_good_one_is_not = _sentry.test_a_failed_run_is_reported_and_a_good_one_is_not
