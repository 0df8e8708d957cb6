"""Deleting a session of a durable agent instance, so that queued and running work respects it.

::

    await flue.delete_session("support", id="customer-42", session="default")

(or ``harness.sessions.delete(name)`` / ``session.delete()`` from code running
inside the instance, a tool for example). **Deletion wins**: the session's
history is gone at once; a submission for it that is queued or running when
it is deleted settles ``failed`` with a ``session_deleted`` error (Flue's
type) instead of running, or instead of writing its answer back, which would
resurrect the history. A submission admitted after the deletion starts a
fresh session. (Flue's TypeScript runtime instead refuses to delete a session
while submissions for it are queued or running; we let the user's explicit
deletion win and fail that work clearly, so nothing waits on it.)

The protocol, crash-safe at every step (section 9.6 of the reference's
"durable deletion marker"):

1. A **deletion marker** is saved in the session store next to the session
   (key ``<session key>#deletion``): an id, and ``upToSeq``, the highest
   submission ``seq`` admitted to the instance so far.
2. The session's history is deleted.
3. In this process, open sessions at that key stop (their running operation
   raises :class:`~flue.harness.errors.SessionDeletedError`, saving nothing).

Every submission runs with a :class:`GuardedSessions` store: opening the
session, it reads the marker, and a submission with ``seq <= upToSeq`` fails
with ``session_deleted``; a later one sees no history (even history left by a
deletion that crashed between steps 1 and 2) and stamps what it saves with
the marker's id, so its own later writes are told apart from the deleted
history. Saving, it reads the marker again: one that appeared while it ran
(a deletion from another process) fails it instead of overwriting the
deletion. Markers stay (they are small) so a restart never loses a deletion.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flue.errors import AgentNotFound
from flue.harness.errors import SessionDeletedError
from flue.harness.session import mark_deleted
from flue.ids import new_id
from flue.persistence.base import SessionData
from flue.persistence.kit import ms_to_iso, now_ms
from flue.persistence.submissions import Submission
from flue.runtime.current import current_runtime
from flue.stream_paths import instance_path

if TYPE_CHECKING:
    from flue.runtime.instances import SubmissionJournal
    from flue.runtime.runtime import Runtime

MARKER_SUFFIX = "#deletion"
HARNESS = "default"  # the harness every durable submission runs in
# Deletions begun in this process, per key: a session being opened while one begins is
# opened as deleted (no await lies between that check and the session's registration).
_BEGUN: dict[str, int] = {}


def marker_key(key: str) -> str:
    return f"{key}{MARKER_SUFFIX}"


def session_key(instance: str, session: str) -> str:
    return f"{instance}/{HARNESS}/{session}"


async def read_marker(sessions: Any, key: str) -> dict[str, Any] | None:
    return _marker_in(await sessions.load(marker_key(key)))


def _marker_in(data: SessionData | None) -> dict[str, Any] | None:
    marker = data.metadata.get("deletion") if data is not None else None
    return marker if isinstance(marker, dict) else None


async def write_deletion(stores: Any, instance: str, key: str) -> dict[str, Any]:
    """Steps 1 and 2: the durable marker, then the history."""
    subs = await stores.submissions.list_for_instance(instance)
    marker = {"id": new_id("del"), "upToSeq": max((s.seq for s in subs), default=0), "at": ms_to_iso(now_ms())}
    await stores.sessions.save(marker_key(key), SessionData(metadata={"deletion": marker}))
    await stores.sessions.delete(key)
    return marker


async def delete_session(
    agent: str, *, id: str, session: str = "default", runtime: Runtime | None = None
) -> None:
    """Delete one session of the agent instance ``agents/<agent>/<id>`` (see the module docstring).
    No-op for a session that never existed (beyond leaving its marker)."""
    runtime = runtime or current_runtime()
    if agent not in runtime.project.agents:
        raise AgentNotFound(f"unknown agent '{agent}' (available: {', '.join(sorted(runtime.project.agents)) or 'none'})")
    if not id or "/" in id:
        raise ValueError(f"instance id must be non-empty and contain no '/', not {id!r}")
    if not session or session.startswith("task:"):
        raise ValueError(f"session name {session!r} is empty or reserved for delegated tasks ('task:...')")
    instance = instance_path(agent, id)
    key = session_key(instance, session)
    error = SessionDeletedError(session, f" of {instance}")
    _BEGUN[key] = _BEGUN.get(key, 0) + 1
    live = await mark_deleted(runtime.stores.sessions, key, error)
    await write_deletion(runtime.stores, instance, key)
    for open_session in live:
        open_session._abort_all(error)


class GuardedSessions:
    """The session store of one submission's harness: it respects deletion markers."""

    def __init__(self, runtime: Runtime, sub: Submission):
        self.inner = runtime.stores.sessions
        self._stores = runtime.stores
        self._sub = sub
        self._seen: dict[str, str | None] = {}  # key -> the marker id it was opened under
        self._own: set[str] = set()  # markers this submission wrote (it may reopen what it deleted)
        #: The submission's journal, whose waiting entry its prompt's session save takes.
        self.journal: SubmissionJournal | None = None

    def _name(self, key: str) -> str:
        return key[len(self._sub.instance) + len(HARNESS) + 2:] if key.startswith(self._sub.instance) else key

    async def load(self, key: str) -> SessionData | None:
        begun = _BEGUN.get(key)
        data = await self._load(key)
        if _BEGUN.get(key) != begun:  # a deletion began here while it was read
            raise SessionDeletedError(self._name(key), f" of {self._sub.instance}")
        return data

    async def _load(self, key: str) -> SessionData | None:
        # A store that reads both in one round trip (the SQL core) does; others read the marker first.
        both = getattr(self.inner, "load_with", None)
        data: SessionData | None = None
        if both is not None:
            data, marker_data = await both(key, marker_key(key))
            marker = _marker_in(marker_data)
        else:
            marker = await read_marker(self.inner, key)
        if marker is None:
            self._seen[key] = None
            return data if both is not None else await self.inner.load(key)
        if self._sub.seq <= int(marker.get("upToSeq", 0)) and marker["id"] not in self._own:
            raise SessionDeletedError(self._name(key), f" of {self._sub.instance}")
        self._seen[key] = marker["id"]
        if both is None:
            data = await self.inner.load(key)
        if data is not None and data.metadata.get("afterDeletion") == marker["id"]:
            return data  # written after the deletion, by this or a later submission
        return None

    async def save(self, key: str, data: SessionData) -> None:
        checked = getattr(self.inner, "save_checked", None)
        if checked is not None:  # the marker check and the write in one transaction (the SQL core)
            def make(marker_data: SessionData | None) -> SessionData:
                return self._guarded(key, data, _marker_in(marker_data))

            if self.journal is not None and self.journal.waits_for(key):
                await self.journal.save_session(key, marker_key(key), make)
            else:
                await checked(key, marker_key(key), make)
            return
        marker = await read_marker(self.inner, key)
        await self.inner.save(key, self._guarded(key, data, marker))

    def _guarded(self, key: str, data: SessionData, marker: dict[str, Any] | None) -> SessionData:
        """``data`` as it may be saved under the session's deletion ``marker`` (raises if it was deleted
        since this submission opened it)."""
        if marker is not None and marker["id"] != self._seen.get(key):
            raise SessionDeletedError(self._name(key), f" of {self._sub.instance} while this submission ran")
        if marker is not None:
            data = data.model_copy(update={"metadata": {**data.metadata, "afterDeletion": marker["id"]}})
        return data

    async def delete(self, key: str) -> None:
        marker = await write_deletion(self._stores, self._sub.instance, key)
        self._own.add(marker["id"])


def guard_sessions(runtime: Runtime, sub: Submission) -> GuardedSessions:
    return GuardedSessions(runtime, sub)
