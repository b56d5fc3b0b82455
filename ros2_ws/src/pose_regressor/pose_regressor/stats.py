"""Rolling rates and latency percentiles for diagnostics and benchmarks (ROS-free)."""

from __future__ import annotations

import threading
from collections import deque

import numpy as np


class RateMeter:
    """Events per second over the last `window_s` seconds (timestamps in seconds, monotonic)."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()
        self.count = 0

    def tick(self, now: float) -> None:
        with self._lock:
            self._times.append(now)
            self.count += 1
            self._trim(now)

    def rate(self, now: float) -> float:
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            # up to now, so a stalled stream's rate falls; max() guards a `now` older than the last tick
            span = max(now - self._times[0], self._times[-1] - self._times[0])
            return (len(self._times) - 1) / span if span > 0 else 0.0

    def last(self) -> float | None:
        with self._lock:
            return self._times[-1] if self._times else None

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


class LatencyWindow:
    """The last `size` latency samples (seconds) with percentiles in milliseconds."""

    def __init__(self, size: int = 300) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def percentile_ms(self, q: float) -> float:
        with self._lock:
            if not self._values:
                return float("nan")
            return float(np.percentile(np.fromiter(self._values, float), q) * 1000.0)

    def __len__(self) -> int:
        return len(self._values)


class EventCounter:
    """A running total of counted events, and how many fell in the last `window_s` seconds."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.total = 0

    def add(self, now: float, count: int = 1) -> None:
        if count <= 0:
            return
        with self._lock:
            self._events.append((now, count))
            self.total += count
            while self._events and now - self._events[0][0] > self.window_s:
                self._events.popleft()

    def recent(self, now: float) -> int:
        with self._lock:
            while self._events and now - self._events[0][0] > self.window_s:
                self._events.popleft()
            return sum(count for _, count in self._events)
