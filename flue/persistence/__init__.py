"""Persistence: where Flue keeps sessions, submissions, runs, event streams and snapshots.

- ``base``: the adapter contract and the session/run/stream/snapshot store protocols (public)
- ``submissions``: the durable-submission store contract, records and helpers (public)
- ``kit``: helpers for adapter authors -- times, JSON hashing, cursors, version check (public)
- ``sql``: the SQL core -- every store's logic once, behind a small dialect interface (public)
- ``sqlite`` (+ ``sqlite_db``, ``sqlite_watch``): the built-in SQLite adapter, a dialect plus its worker thread
- ``plugin``: the built-in ``sqlite`` kind and ``open_persistence(project)``

Other backends are plugins (``flue-postgres``); ``flue.testing.persistence_contract``
is the test suite every adapter should pass.
"""
