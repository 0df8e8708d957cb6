"""Call handles and abort signals: Flue's ``CallHandle`` and ``AbortSignal``, the Python way.

``session.prompt``/``skill``/``task``/``shell`` and ``harness.shell`` start
their operation at once (in a task of its own) and return a
:class:`CallHandle`::

    handle = session.prompt("Summarize the repository")
    ...
    handle.abort("the user left")          # or: a signal passed at call time fires
    try:
        reply = await handle
    except flue.OperationCancelledError as exc:
        print(exc.reason)                  # "the user left"

A handle is awaitable (any number of times), and is also a coroutine, so
``asyncio.create_task(handle)``, ``asyncio.wait_for(handle, 5)`` and
``asyncio.gather(...)`` take it as they took the coroutine it replaced.
Cancelling the task that awaits a handle cancels the operation too, as
before. ``signal=`` at call time accepts an :class:`AbortSignal` or an
``asyncio.Event``; either one firing aborts the call (an already fired one
aborts it before it starts). ``handle.signal`` is the call's own
:class:`AbortSignal`: it fires on ``abort()`` or when the linked signal fires,
and tools receive it as ``ctx.signal`` so they can stop work the harness
cannot cancel for them (threads, remote jobs).

What ``abort()`` does: it fires the signal, then cancels the operation's
task, which closes the model stream and cancels running tools; the awaited
handle raises :class:`~flue.harness.errors.OperationCancelledError` (with
``reason``). The session's history is left exactly as it was before the
call. Once an operation has finished its work and is writing its result,
``abort()`` does nothing: the call completes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Generic, TypeVar

from flue.harness.errors import OperationCancelledError

T = TypeVar("T")


def _nothing() -> None:
    """What undoes nothing (a link or callback already gone)."""


class AbortSignal:
    """A one-shot cancellation signal: create one, pass it as ``signal=``, call ``abort()``.

    ``aborted`` and ``reason`` say whether and why it fired; ``await signal.wait()``
    returns once it fires; ``add_callback(fn)`` runs ``fn(signal)`` when it fires (at once
    if it already has) and returns a function that removes it.
    """

    def __init__(self) -> None:
        self._aborted = False
        self._reason: Any = None
        self._event = asyncio.Event()
        self._callbacks: list[Callable[[AbortSignal], Any]] = []

    def __repr__(self) -> str:
        return f"<AbortSignal aborted={self._aborted} reason={self._reason!r}>"

    @property
    def aborted(self) -> bool:
        return self._aborted

    @property
    def reason(self) -> Any:
        return self._reason

    def abort(self, reason: Any = None) -> None:
        """Fire the signal (once; later calls change nothing)."""
        if self._aborted:
            return
        self._aborted = True
        self._reason = reason
        self._event.set()
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    async def wait(self) -> None:
        await self._event.wait()

    def add_callback(self, fn: Callable[[AbortSignal], Any]) -> Callable[[], None]:
        if self._aborted:
            fn(self)
            return _nothing
        self._callbacks.append(fn)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(fn)

        return remove


def link_signal(source: AbortSignal | asyncio.Event | None, target: AbortSignal) -> Callable[[], None]:
    """Abort ``target`` when ``source`` fires; returns a function that undoes the link."""
    if source is None:
        return _nothing
    if isinstance(source, AbortSignal):

        def forward(signal: AbortSignal) -> None:
            target.abort(signal.reason)

        return source.add_callback(forward)
    if isinstance(source, asyncio.Event):
        if source.is_set():
            target.abort("the signal was set")
            return _nothing
        watcher = asyncio.get_running_loop().create_task(source.wait(), name="flue-abort-watch")

        def fire(task: asyncio.Task[Any]) -> None:
            if not task.cancelled():
                target.abort("the signal was set")

        def unlink() -> None:
            watcher.cancel()

        watcher.add_done_callback(fire)
        return unlink
    raise TypeError(f"signal= must be a flue.AbortSignal or an asyncio.Event, not {type(source).__name__}")


class CallControl:
    """What the running operation shares with its handle: the signal, and whether it is
    past the point where an abort could still change its outcome."""

    def __init__(self, signal: AbortSignal):
        self.signal = signal
        self.committing = False


class CallHandle(Coroutine[Any, Any, T], Generic[T]):
    """An operation in flight: awaitable, abortable (see the module docstring)."""

    def __init__(
        self,
        run: Callable[[CallControl], Awaitable[T]],
        *,
        kind: str,
        session: str | None = None,
        signal: AbortSignal | asyncio.Event | None = None,
        on_done: Callable[[CallControl], None] | None = None,
    ):
        if signal is not None and not isinstance(signal, AbortSignal | asyncio.Event):
            raise TypeError(f"signal= must be a flue.AbortSignal or an asyncio.Event, not {type(signal).__name__}")
        self.kind = kind
        self.session = session
        self.signal = AbortSignal()
        self.control = CallControl(self.signal)
        self._error: BaseException | None = None
        self._driver: Coroutine[Any, Any, T] | None = None
        self._on_done = on_done
        self._unlink: Callable[[], None] = _nothing
        self._task: asyncio.Task[T] = asyncio.get_running_loop().create_task(self._main(run), name=f"flue-{kind}")
        self._task.add_done_callback(self._finished)
        self._forget_abort = self.signal.add_callback(self._on_abort)
        self._unlink = link_signal(signal, self.signal)  # an already fired signal cancels it before it starts

    def __repr__(self) -> str:
        state = "done" if self._task.done() else "running"
        return f"<CallHandle {self.kind} {state} aborted={self.signal.aborted}>"

    # -- public -------------------------------------------------------------------------

    def abort(self, reason: Any = None) -> None:
        """Cancel the call; the awaited handle raises ``OperationCancelledError``."""
        if not self._task.done() and not self.control.committing:
            self.signal.abort(reason)

    def done(self) -> bool:
        return self._task.done()

    def __await__(self) -> Generator[Any, None, T]:
        return self._wait().__await__()

    # -- the coroutine protocol (for create_task / wait_for / gather) ----------------------

    def send(self, value: Any) -> Any:
        return self._drive().send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None and tb is None:
            return self._drive().throw(typ)
        return self._drive().throw(typ, val, tb)

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()

    # -- internals ----------------------------------------------------------------------

    def _drive(self) -> Coroutine[Any, Any, T]:
        if self._driver is None:
            self._driver = self._wait()
        return self._driver

    async def _main(self, run: Callable[[CallControl], Awaitable[T]]) -> T:
        try:
            return await run(self.control)
        except OperationCancelledError as exc:
            self._error = exc
            raise

    async def _wait(self) -> T:
        try:
            return await self._task  # a cancelled awaiter cancels the task too
        except asyncio.CancelledError as exc:
            if self._error is not None:
                raise self._error from None
            if self._task.cancelled() and self.signal.aborted:  # aborted before the operation began
                raise OperationCancelledError(None, self.kind, self.session, reason=self.signal.reason) from exc
            raise

    def _on_abort(self, _signal: AbortSignal) -> None:
        if not self._task.done() and not self.control.committing:
            self._task.cancel()

    def _finished(self, task: asyncio.Task[T]) -> None:
        self._unlink()
        self._forget_abort()
        # neither the signals nor these closures hold the handle any more: no cycle left to collect
        self._unlink = self._forget_abort = _nothing
        if self._on_done is not None:
            self._on_done(self.control)
        if not task.cancelled():
            task.exception()  # retrieved: an unawaited handle never logs "exception was never retrieved"
