"""Ctrl-C and SIGTERM around child processes: held back while a pool forks, left to the parent in
workers, and never lost in a callback whose exceptions Python ignores."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def leave_stop_signals_to_parent() -> None:
    """For a worker process: ignore Ctrl-C and die on SIGTERM; the parent stops the workers and
    cleans up (a worker interrupted by a terminal's Ctrl-C would otherwise print a traceback of its
    own, and one that kept a parent's recording handler would survive `terminate()`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Holds Ctrl-C and SIGTERM back while a pool of worker processes is created.

    A handler that raises KeyboardInterrupt there can hit an at-fork callback (where the exception
    is printed and ignored: the signal is lost) or leave the pool half-started (workers without
    a manager thread, which then block the interpreter's exit). So the signals are only recorded
    here and raised again, to the handlers in place before, once the pool is whole.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, _frame: received.append(number))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        if received:
            signal.raise_signal(received[0])


@dataclass
class StopRequests:
    """The stop signals received inside `stop_signals_remembered`."""

    received: list[int] = field(default_factory=list)

    def raise_if_any(self) -> None:
        """Raises the KeyboardInterrupt of a signal whose own one was lost (see below)."""
        if self.received:
            raise KeyboardInterrupt


@contextmanager
def stop_signals_remembered() -> Iterator[StopRequests]:
    """Ctrl-C and SIGTERM still interrupt at once through the handlers in place, and are also
    remembered, so that a loop can call `raise_if_any()` at each step.

    Python drops an exception raised inside a weakref callback, a finalizer or `__del__` (it prints
    "Exception ignored in ..." and goes on). A DataLoader's worker teardown runs such callbacks
    (multiprocessing keeps WeakValueDictionaries), so a Ctrl-C landing there was lost and training
    ran to the end. Here that lost KeyboardInterrupt is neither printed nor forgotten: the next
    `raise_if_any()` raises it again. A handler that is not a Python function (SIG_IGN, SIG_DFL)
    is left as it is.
    """
    requests = StopRequests()
    if threading.current_thread() is not threading.main_thread():
        yield requests  # signal handlers can only be set from the main thread
        return
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum, handler in previous.items():
        if callable(handler):
            signal.signal(signum, _remembering(handler, requests.received))
    previous_hook = sys.unraisablehook

    def drop_remembered_interrupts(unraisable: sys.UnraisableHookArgs) -> None:
        if not (requests.received and issubclass(unraisable.exc_type, KeyboardInterrupt)):
            previous_hook(unraisable)

    sys.unraisablehook = drop_remembered_interrupts
    try:
        yield requests
    finally:
        sys.unraisablehook = previous_hook
        for signum, handler in previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)


def _remembering(
    handler: Callable[[int, FrameType | None], object], received: list[int]
) -> Callable[[int, FrameType | None], object]:
    def remember_then_handle(signum: int, frame: FrameType | None) -> object:
        received.append(signum)
        return handler(signum, frame)

    return remember_then_handle
