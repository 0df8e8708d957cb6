"""Flue's HTTP server (aiohttp).

``errors``: the error envelope, :class:`~flue.server.errors.HttpError` and the
middleware that renders every error with it. ``streams``: the Durable Streams
read path (catch-up, long-poll, SSE, HEAD) over an ``EventStreamStore``, used
by the agent and run routes. ``sse``: the Server-Sent Events frame writer.
``conformance``: a test-only app that lets the official Durable Streams
conformance suite drive the read path; the normal server never mounts it.
"""
