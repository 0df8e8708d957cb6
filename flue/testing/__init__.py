"""Test support for Flue users and for Flue itself.

- scripted models (in process, and behind a real OpenAI-compatible HTTP server)
- ``persistence_contract``: the test suite every persistence adapter should pass
"""
