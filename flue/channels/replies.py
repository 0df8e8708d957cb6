"""Answering back: post an agent's final answer where its event came from.

With ``reply: true`` on a rule (or ``reply=True`` on a Python channel's
``dispatch``), the process that admitted the event waits for the
submission's settlement through the coordinator (:meth:`Coordinator.wait`,
which sees settlements by any replica), takes the settled result's text and
hands it to the kind's ``post`` function (a Slack thread reply, a GitHub
comment). Nothing is posted for a failed submission or an empty answer.

**Failures.** ``post`` raises :class:`ReplyFailed` (``retryable`` or not);
any other exception (a dropped connection, a timeout) counts as retryable.
Retryable failures are tried again with exponential backoff (0.5 s, 1 s,
2 s... at most 30 s, or the provider's ``Retry-After``), up to
``attempts`` times. The outcome is a ``log`` event on the agent instance's
stream (``agents/<agent>/<id>``): level ``info`` when posted, ``error`` when it
gave up, with the provider's status and error code, never a credential.

**Crashes (at-most-once).** The reply task lives in the admitting process.
If that process stops after the settlement and before the post went
through, the reply is not posted: the answer stays in the instance's stream
and session history. A provider's retry of an event already admitted does
not start a second reply, and no other replica posts one. We chose this over
at-least-once because a duplicated message in a Slack thread or on a GitHub
issue is visible to people, while a lost one is recovered by asking again.
On a graceful shutdown pending replies are drained with the server's grace
period (a submission that finishes within it is still answered).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from flue.events import Log

if TYPE_CHECKING:
    from flue.persistence.submissions import Submission
    from flue.runtime.runtime import Runtime

log = logging.getLogger("flue.channels")

ATTEMPTS = 5
BASE_DELAY = 0.5
MAX_DELAY = 30.0
SETTLE_MARGIN_S = 60.0  # wait past the submission's deadline this long before giving up on it

#: post(text) -> details of what was posted (ids, never a secret) for the log event
Post = Callable[[str], Awaitable[dict[str, Any]]]


class ReplyFailed(Exception):
    """A provider refused a reply. ``message`` must be safe to show (status, error code)."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header in seconds (the HTTP-date form is not used by Slack or GitHub)."""
    return float(value) if value and value.strip().isdigit() else None


def answer_text(sub: Submission) -> str:
    """The final text of a settled submission ('' for a failure or no text)."""
    if sub.status != "completed":
        return ""
    result = sub.result
    text = result.get("text") if isinstance(result, dict) else result if isinstance(result, str) else None
    return text.strip() if isinstance(text, str) else ""


async def instance_log(runtime: Runtime, sub: Submission, level: str, message: str, attributes: dict[str, Any]) -> None:
    """Append a ``log`` event to the submission's instance stream (and show it to observers)."""
    from flue.runtime.instances import split_instance
    from flue.runtime.stream_writer import StreamWriter

    agent, instance_id = split_instance(sub.instance)
    sink = runtime.sink.child(
        instance_id=instance_id, agent=agent, submission_id=sub.submission_id, dispatch_id=sub.dispatch_id
    )
    writer = StreamWriter(runtime.stores.streams, sub.instance)
    sink.subscribe(writer)
    await sink.emit(Log(level=level, message=message, attributes=attributes))  # type: ignore[arg-type]
    await writer.drain()


async def deliver(
    runtime: Runtime,
    sub: Submission,
    post: Post,
    *,
    what: str,
    attempts: int = ATTEMPTS,
    base_delay: float = BASE_DELAY,
) -> bool:
    """Wait for ``sub`` to settle and post its answer; ``what`` names the destination in logs
    (e.g. ``"slack thread"``). True when a reply was posted."""
    try:
        final = await runtime.coordinator.wait(sub.submission_id, timeout=sub.seconds_left() + SETTLE_MARGIN_S)
    except TimeoutError:
        await instance_log(runtime, sub, "error", f"no reply to the {what}: the submission did not settle", {})
        return False
    text = answer_text(final)
    if not text:
        return False
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            details = await post(text)
        except ReplyFailed as exc:
            last, retryable, wait = str(exc), exc.retryable, exc.retry_after
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # network: connection refused or reset, timeouts
            last, retryable, wait = f"{type(exc).__name__}: {exc}", True, None
        else:
            await instance_log(runtime, final, "info", f"replied in the {what}", {"attempts": attempt, **details})
            return True
        if not retryable or attempt == attempts:
            break
        delay = wait if wait is not None else base_delay * 2 ** (attempt - 1)
        await asyncio.sleep(min(max(delay, 0.0), MAX_DELAY))
    log.error("reply to the %s for %s failed: %s", what, sub.instance, last)
    await instance_log(
        runtime, final, "error", f"could not reply in the {what}: {last}", {"attempts": attempt, "error": last}
    )
    return False


def start_reply(runtime: Runtime, sub: Submission, post: Post, *, what: str,
                keep: Callable[[asyncio.Task[Any]], None] | None = None) -> asyncio.Task[bool]:
    """Run :func:`deliver` in the background; ``keep`` holds the task (the server's drain set)."""
    task = asyncio.get_running_loop().create_task(deliver(runtime, sub, post, what=what), name=f"flue-reply-{sub.submission_id}")
    if keep is not None:
        keep(task)
    else:
        _background.add(task)
        task.add_done_callback(_background.discard)
    return task


_background: set[asyncio.Task[Any]] = set()
