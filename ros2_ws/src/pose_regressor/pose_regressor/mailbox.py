"""A one-slot mailbox and the worker thread that drains it (ROS-free).

The localizer never queues work: while the engine is busy, a newer synchronized camera set
replaces the one waiting in the slot (and is counted as dropped), so latency stays bounded
when the machine is overloaded. Producers (subscription callbacks) never block on inference.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestMailbox(Generic[T]):
    """Holds at most one item; `put` replaces a waiting item instead of queueing behind it.

    `close` wakes every consumer; `reopen` makes a closed mailbox usable again (a pipeline that is
    stopped and started again keeps its mailbox, and with it the `replaced` count).
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._has_item = False
        self._closed = False
        # Bumped by close/reopen: a consumer that was waiting across a close and a quick reopen
        # (a worker whose join timed out) must not take an item meant for the new consumer.
        self._epoch = 0
        self._cond = threading.Condition()
        self.replaced = 0

    def put(self, item: T) -> bool:
        """Leaves `item` for the consumer; True if it replaced an item that was never taken."""
        with self._cond:
            replaced = self._has_item
            if replaced:
                self.replaced += 1
            self._item, self._has_item = item, True
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None) -> T | None:
        """The waiting item (emptying the slot), or None after `timeout` s or once closed."""
        with self._cond:
            epoch = self._epoch
            if not self._cond.wait_for(
                lambda: self._has_item or self._closed or self._epoch != epoch, timeout
            ):
                return None
            if not self._has_item or self._epoch != epoch:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def discard(self) -> bool:
        """Empties the slot without handing the item to anyone; True if there was one."""
        with self._cond:
            had = self._has_item
            self._item, self._has_item = None, False
            return had

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._epoch += 1
            self._cond.notify_all()

    def reopen(self) -> None:
        """Undoes `close` (a waiting item stays: call `discard` first to drop it)."""
        with self._cond:
            if self._closed:
                self._closed = False
                self._epoch += 1
                self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class MailboxWorker(Generic[T]):
    """A daemon thread that runs `handle` on every item taken from a `LatestMailbox`.

    An exception from `handle` goes to `on_error` (the worker keeps running: the next item is
    tried), so one bad frame or a transient engine failure never stops the pipeline.

    `start` / `stop` may alternate any number of times: each `start` runs a new thread (a Python
    thread cannot be started twice) on the reopened mailbox, each `stop` closes the mailbox and
    joins the thread. `processed` counts over all runs.
    """

    def __init__(
        self,
        mailbox: LatestMailbox[T],
        handle: Callable[[T], None],
        on_error: Callable[[BaseException, T], None],
        name: str = "inference",
    ) -> None:
        self._mailbox = mailbox
        self._handle = handle
        self._on_error = on_error
        self._name = name
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lifecycle = threading.Lock()  # start and stop from different threads do not interleave
        self.busy = False
        self.processed = 0

    @property
    def running(self) -> bool:
        """A thread is started and not asked to stop."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop_event.is_set()

    def start(self) -> None:
        """Starts a worker thread; does nothing while one is running."""
        with self._lifecycle:
            if self.running:
                return
            self._mailbox.reopen()
            # Each thread gets its own stop event: a previous thread that outlived its stop's
            # join (a hung engine call) still sees its own event set and ends after that call.
            self._stop_event = threading.Event()
            # daemon: a thread stuck in a hung engine call must not keep the process alive at exit
            self._thread = threading.Thread(
                target=self._run, args=(self._stop_event,), name=self._name, daemon=True
            )
            self._thread.start()

    def _run(self, stop: threading.Event) -> None:
        while not stop.is_set() and not self._mailbox.closed:
            item = self._mailbox.take(timeout=0.1)  # wakes up to notice stop() within 0.1 s
            if item is None:
                continue
            self.busy = True
            try:
                self._handle(item)
            except Exception as exc:  # reported, never fatal: the next set is tried
                self._on_error(exc, item)
            finally:
                self.busy = False
                self.processed += 1

    def stop(self, timeout: float = 5.0) -> None:
        """Asks the thread to end, wakes it and waits up to `timeout` s for the item in hand."""
        with self._lifecycle:
            self._stop_event.set()
            self._mailbox.close()
            thread = self._thread
            # From inside `handle` (a result callback that stops the pipeline) the thread cannot
            # join itself; it ends when `handle` returns.
            if thread is not None and thread.is_alive() and thread is not threading.current_thread():
                thread.join(timeout)
