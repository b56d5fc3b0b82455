"""Ctrl-C and SIGTERM around child processes: held back while a pool forks, left to the parent in workers."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

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
