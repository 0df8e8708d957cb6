"""Flue's SQL core: the storage logic once, for every SQL database (public API for adapter authors).

An adapter is a :class:`~flue.persistence.sql.core.Dialect` plus connection
handling (a :class:`~flue.persistence.sql.core.Database` and a
:class:`~flue.persistence.sql.core.Changes`); the stores here do the rest. The
built-in SQLite adapter (:mod:`flue.persistence.sqlite`) and the
``flue-postgres`` plugin are built this way; see docs/persistence.md,
"Writing a SQL adapter".
"""

from flue.persistence.sql.core import (
    QUEUE_KEY,
    Changes,
    Database,
    Dialect,
    Kind,
    Mode,
    Notify,
    Op,
    Steps,
    Stmt,
    run_dbapi,
    single,
    wake,
)
from flue.persistence.sql.factory import SQLStores, open_stores
from flue.persistence.sql.stores import (
    SQLEventStreamStore,
    SQLRunStore,
    SQLSessionStore,
    SQLSnapshotStore,
    append_rows,
)
from flue.persistence.sql.submissions import SQLSubmissionStore

__all__ = [
    "QUEUE_KEY",
    "Changes",
    "Database",
    "Dialect",
    "Kind",
    "Mode",
    "Notify",
    "Op",
    "SQLEventStreamStore",
    "SQLRunStore",
    "SQLSessionStore",
    "SQLSnapshotStore",
    "SQLSubmissionStore",
    "SQLStores",
    "Steps",
    "Stmt",
    "append_rows",
    "open_stores",
    "run_dbapi",
    "single",
    "wake",
]
