"""Replica identity: a restarted server takes back its own dead leases at once.

A server's leases (submission claims and workflow runs) are held by an owner
string ``<replica id>~<boot id>``. The replica id names the server and
survives restarts: ``coordinator.replica_id`` in ``flue.yaml``, else the
``FLUE_REPLICA_ID`` environment variable, else, for ``flue start`` on a fixed
port, the host name, the port and a hash of the project's path. The boot id
is new in every process.

At startup the process *locks* its replica id through the persistence
adapter (``adapter.lock_replica(id)``: an ``flock`` beside a SQLite file, a
PostgreSQL session advisory lock), a lock the operating system or the
database drops when its holder dies, however it dies. Holding it proves
that every earlier process of this replica is dead, so the leases owned by
``<replica id>~<any other boot id>`` are expired there and then
(``expire_leases`` / ``expire_run_leases``), and this server's coordinator
and run recovery claim them at once, instead of waiting out the lease.
Claims stay atomic and fenced by attempt, so nothing settles twice.

Two live processes with the same identity are a configuration error: an
explicitly configured replica id that stays locked for a lease's length
refuses to start (the wait covers a holder whose host died: PostgreSQL drops
its lock once TCP keepalives notice, and the lock connection asks for
keepalives every few seconds); a default one falls back at once, with a
warning, to an identity of its own for this process (no fast recovery). Without a stable id (no setting, port 0, ``flue
dev``), or with an adapter that has no ``lock_replica``, leases are only
taken over when they run out, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any

from flue.errors import FlueError
from flue.ids import new_id

log = logging.getLogger("flue")

ENV_REPLICA_ID = "FLUE_REPLICA_ID"
SEPARATOR = "~"
_REPLICA_ID = re.compile(r"^[A-Za-z0-9._:@/-]{1,128}$")


class ReplicaConflict(FlueError):
    """Another live process holds this server's configured replica id."""


@dataclass(frozen=True)
class ReplicaIdentity:
    replica_id: str
    boot_id: str
    #: Whether earlier processes of this replica are known dead (the lock is held): then
    #: their leases may be taken back at once.
    locked: bool

    @property
    def owner(self) -> str:
        """The owner string of this process's leases."""
        return f"{self.replica_id}{SEPARATOR}{self.boot_id}"

    @property
    def previous_owners(self) -> str:
        """The prefix shared by the owner strings of every process of this replica."""
        return self.replica_id + SEPARATOR


def configured_replica_id(config_value: str | None) -> str | None:
    """The replica id set in ``flue.yaml`` or the environment (validated), else None."""
    value = os.environ.get(ENV_REPLICA_ID) or config_value
    if value is None:
        return None
    if not _REPLICA_ID.match(value):
        raise ReplicaConflict(
            f"invalid replica id {value[:60]!r} ({ENV_REPLICA_ID} or coordinator.replica_id): "
            "use 1-128 letters, digits and . _ : @ / -"
        )
    return value


def default_replica_id(root: Any, port: int | None) -> str | None:
    """Host, port and project for ``flue start`` on a fixed port (only one live process can
    listen there); None without a fixed port."""
    if not port:
        return None
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:64] or "host"
    project = hashlib.sha256(os.path.realpath(str(root)).encode()).hexdigest()[:8]
    return f"{host}:{port}:{project}"


async def claim_identity(
    adapter: Any, config_value: str | None, root: Any, port: int | None, *, wait_s: float = 0.0
) -> ReplicaIdentity:
    """This process's identity, with its replica id locked when there is a stable one.

    A configured id that is locked is retried for ``wait_s`` seconds (the lease: a lock whose
    holder's host died is released once the database notices, and by then the leases ran out
    anyway), then refused."""
    boot = new_id("boot")
    explicit = configured_replica_id(config_value)
    replica_id = explicit or default_replica_id(root, port)
    lock = getattr(adapter, "lock_replica", None)
    if replica_id is None or lock is None:
        return ReplicaIdentity(replica_id or new_id("proc"), boot, locked=False)
    if await lock(replica_id):
        return ReplicaIdentity(replica_id, boot, locked=True)
    if explicit:
        log.warning("flue: replica id %r is held by a live process; waiting up to %.0f s for it", replica_id, wait_s)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            if await lock(replica_id):
                return ReplicaIdentity(replica_id, boot, locked=True)
        raise ReplicaConflict(
            f"another live process already runs as replica {replica_id!r}: give every server its own "
            f"{ENV_REPLICA_ID} (or coordinator.replica_id)"
        )
    log.warning(
        "flue: another live process runs this project on port %s as replica %r; this one takes its own identity "
        "(after a crash its work waits for the lease to run out)", port, replica_id,
    )
    return ReplicaIdentity(new_id("proc"), boot, locked=False)


async def take_back_leases(stores: Any, identity: ReplicaIdentity) -> tuple[list[str], list[str]]:
    """Expire the leases of this replica's earlier (dead) processes; returns (submission ids, run ids)."""
    if not identity.locked:
        return [], []
    subs: list[str] = []
    runs: list[str] = []
    expire = getattr(stores.submissions, "expire_leases", None)
    if expire is not None:
        subs = await expire(identity.previous_owners, keep=identity.owner)
    expire_runs = getattr(stores.runs, "expire_run_leases", None)
    if expire_runs is not None:
        runs = await expire_runs(identity.previous_owners, keep=identity.owner)
    if subs or runs:
        log.warning(
            "flue: replica %s restarted; taking back %d submission(s) and %d run(s) of its previous process",
            identity.replica_id, len(subs), len(runs),
        )
    return subs, runs
