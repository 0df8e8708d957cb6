"""``dispatch(agent, id=..., input=...)``: durable asynchronous input to an agent instance.

Returns a :class:`~flue.persistence.submissions.DispatchReceipt` (``dispatchId``,
``acceptedAt``) once the input is admitted to the persistence adapter, not
when the agent answers. Replaying the same ``dispatch_id`` with the same input
returns the original receipt; with different input it raises
:class:`~flue.persistence.submissions.DispatchConflictError`. The input shows
up on the instance's stream (``agents/<agent>/<id>``) with its ``dispatchId``.
"""

from __future__ import annotations

from typing import Any

from flue.persistence.submissions import DispatchReceipt
from flue.runtime.runtime import Runtime


async def dispatch(
    agent: str,
    *,
    id: str,
    input: Any,
    dispatch_id: str | None = None,
    runtime: Runtime | None = None,
) -> DispatchReceipt:
    runtime = runtime or Runtime.current()
    sub, _created = await runtime.coordinator.admit(agent, id, input, kind="dispatch", dispatch_id=dispatch_id)
    return sub.receipt()
