// Runs the official Durable Streams server conformance suite against the
// server named by CONFORMANCE_BASE_URL (started by tests/test_stream_conformance.py
// with `python -m flue.testing.stream_conformance`). Select groups with `vitest -t`.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_BASE_URL
if (!baseUrl) {
  throw new Error("CONFORMANCE_BASE_URL is required (e.g. http://127.0.0.1:4437)")
}

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_TIMEOUT_MS ?? "2000"),
})
