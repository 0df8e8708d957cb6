"""Persistence: where Flue keeps sessions, submissions, runs, event streams and snapshots.

- ``base``: the adapter contract and the session/run/stream/snapshot store protocols (public)
- ``submissions``: the durable-submission store contract, records and helpers (public)
- ``kit``: helpers for adapter authors -- times, JSON hashing, cursors, version check (public)
- ``sqlite`` (+ ``sqlite_stores``, ``sqlite_submissions``): the built-in SQLite adapter
- ``plugin``: the built-in ``sqlite`` kind and ``open_persistence(project)``

Other backends are plugins (``flue-postgres``); ``flue.testing.persistence_contract``
is the test suite every adapter should pass.
"""
