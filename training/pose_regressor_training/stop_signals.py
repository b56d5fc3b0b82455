"""Ctrl-C and SIGTERM: SIGTERM stopping a command like Ctrl-C, both held back while a pool forks,
left to the parent in workers, and never lost in a callback whose exceptions Python ignores."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Termination:
    """The stop signals received inside `sigterm_as_interrupt`."""

    received: list[int] = field(default_factory=list)

    @property
    def signal_number(self) -> int:
        """The signal that stopped the command: SIGTERM when one came, else Ctrl-C's SIGINT."""
        return self.received[0] if self.received else int(signal.SIGINT)

    @property
    def exit_status(self) -> int:
        """128 + the signal number: the shell's convention (130 for Ctrl-C, 143 for SIGTERM)."""
        return 128 + self.signal_number


@dataclass(frozen=True)
class _TerminateAsInterrupt:
    """The SIGTERM handler of `sigterm_as_interrupt`; `outer` is the one it replaced, if one of these."""

    termination: Termination
    outer: _TerminateAsInterrupt | None

    def record(self, signum: int) -> None:
        self.termination.received.append(signum)
        if self.outer is not None:
            self.outer.record(signum)  # an outer command's line names the signal too

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.record(signum)
        raise KeyboardInterrupt


@contextmanager
def sigterm_as_interrupt() -> Iterator[Termination]:
    """SIGTERM raises KeyboardInterrupt, so a command stops the same clean way as on Ctrl-C:
    `docker stop`, systemd and schedulers send SIGTERM. The yielded `Termination` tells which
    signal it was; the handler in place before is restored on the way out."""
    termination = Termination()
    if threading.current_thread() is not threading.main_thread():
        yield termination  # signal handlers can only be set from the main thread
        return
    previous = signal.getsignal(signal.SIGTERM)
    outer = previous if isinstance(previous, _TerminateAsInterrupt) else None
    signal.signal(signal.SIGTERM, _TerminateAsInterrupt(termination, outer))
    try:
        yield termination
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


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
