"""The runtime: workflow runs, agent instances and their event streams.

``Runtime`` ties a loaded project to its persistence stores and its plugins'
observers; the CLI (``flue run``, ``flue connect``) and the HTTP server both
drive work through it.
"""
