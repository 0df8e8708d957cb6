"""All five stores of an adapter on the SQL core, built the same way for every dialect."""

from __future__ import annotations

from dataclasses import dataclass

from flue.persistence.sql.core import Changes, Database
from flue.persistence.sql.stores import SQLEventStreamStore, SQLRunStore, SQLSessionStore, SQLSnapshotStore
from flue.persistence.sql.submissions import SQLSubmissionStore


@dataclass
class SQLStores:
    """What an adapter's ``connect()`` returns (``PersistenceStores``)."""

    sessions: SQLSessionStore
    runs: SQLRunStore
    streams: SQLEventStreamStore
    submissions: SQLSubmissionStore
    snapshots: SQLSnapshotStore


def open_stores(db: Database, changes: Changes) -> SQLStores:
    """The stores on ``db``; submission lifecycle events wake the stream store's subscribers too."""
    streams = SQLEventStreamStore(db, changes)
    return SQLStores(
        sessions=SQLSessionStore(db),
        runs=SQLRunStore(db, streams),
        streams=streams,
        submissions=SQLSubmissionStore(db, changes, streams),
        snapshots=SQLSnapshotStore(db),
    )
