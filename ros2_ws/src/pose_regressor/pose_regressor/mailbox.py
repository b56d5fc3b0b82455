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
    """Holds at most one item; `put` replaces a waiting item instead of queueing behind it."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._has_item = False
        self._closed = False
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
            if not self._cond.wait_for(lambda: self._has_item or self._closed, timeout):
                return None
            if not self._has_item:
                return None
            item, self._item, self._has_item = self._item, None, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class MailboxWorker(Generic[T]):
    """A daemon thread that runs `handle` on every item taken from a `LatestMailbox`.

    An exception from `handle` goes to `on_error` (the worker keeps running: the next item is
    tried), so one bad frame or a transient engine failure never stops the pipeline.
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
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.busy = False
        self.processed = 0

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._mailbox.closed:
            item = self._mailbox.take(timeout=0.1)
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
        self._mailbox.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
