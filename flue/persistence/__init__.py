"""Persistence: the adapter contract (``base``) and the built-in SQLite adapter."""
