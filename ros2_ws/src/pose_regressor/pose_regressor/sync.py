"""Grouping the frames of T cameras into synchronized sets by their stamps (ROS-free).

Conventions: stamps are integer nanoseconds (header stamps); camera 0 is the reference camera
and a set carries its stamp; ``slop_ns`` bounds the spread of a whole set.

Matching rule (the latest unused frame per camera is kept):

1. A frame that is not newer than its camera's frame in the last emitted set is discarded
   (``stale``); otherwise it replaces that camera's pending frame (``replaced`` if there was one).
2. As soon as every camera has a pending frame and ``max(stamps) - min(stamps) <= slop_ns``,
   those frames are emitted as one set and the pending slots are cleared.
3. A stamp older than its camera's previous stamp (bag loop, sim-time reset) clears all state
   (``resets``) before the frame is taken as the first of a new epoch.

Consequences: a frame is used at most once, so no set is emitted twice; every frame of a set
is newer than the same camera's frame of the previous set, so the reference stamp strictly
increases between sets (until a reset); no set spans more than ``slop_ns``.  When the cameras
publish identical stamps and each stamp's frames all arrive before any camera's next frame
(in any order), every stamp yields exactly one set.  Frames overtaken by a newer frame of the
same camera before their set completes are lost (real-time behaviour: latest wins).

Each :meth:`FrameSynchronizer.add` is O(T).  The object is thread-safe: a lock guards only the
bookkeeping, and no user code runs while it is held (sets are returned, not called back).
"""

from __future__ import annotations

import operator
import threading
from dataclasses import dataclass
from typing import Generic, SupportsIndex, TypeVar

__all__ = ["FrameSynchronizer", "SyncedSet"]

T = TypeVar("T")


@dataclass(frozen=True)
class SyncedSet(Generic[T]):
    """One synchronized set: a frame per camera, in camera order, stamped by camera 0."""

    stamp_ns: int  # stamp of the reference camera's (camera 0's) frame
    frames: tuple[T, ...]
    stamps: tuple[int, ...]  # each frame's own stamp, camera order

    @property
    def skew_ns(self) -> int:
        """Spread of the set's stamps, ``max - min`` (ns), at most the synchronizer's slop."""
        return max(self.stamps) - min(self.stamps)


def _as_int(value: object, name: str) -> int:
    # bool is an int subclass: True must not pass as camera 1 or 1 ns
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    return operator.index(value)


class FrameSynchronizer(Generic[T]):
    """Keeps the latest unused frame per camera and emits sets whose stamps lie within ``slop_ns``.

    See the module docstring for the exact matching rule.  ``T`` is whatever the caller wants
    to get back per camera (a message, a decoded image, ...); it is never inspected.
    """

    def __init__(self, camera_count: int, slop_ns: int) -> None:
        count = _as_int(camera_count, "camera_count")
        slop = _as_int(slop_ns, "slop_ns")
        if count < 1:
            raise ValueError(f"camera_count must be at least 1, got {count}")
        if slop < 0:
            raise ValueError(f"slop_ns must be >= 0, got {slop}")
        self.camera_count = count
        self.slop_ns = slop
        self._lock = threading.Lock()
        self._pending: list[tuple[int, T] | None] = [None] * count
        self._last_seen: list[int | None] = [None] * count
        self._last_used: list[int] | None = None
        self._emitted = 0
        self._replaced = 0
        self._stale = 0
        self._resets = 0

    # ------------------------------------------------------------------ counters
    # Read without the lock: each is one int, whose read is atomic in CPython.

    @property
    def emitted(self) -> int:
        """Sets returned by :meth:`add` so far."""
        return self._emitted

    @property
    def replaced(self) -> int:
        """Pending frames overwritten by a newer frame of the same camera before being used."""
        return self._replaced

    @property
    def stale(self) -> int:
        """Frames discarded because they were not newer than their camera's frame in the last set."""
        return self._stale

    @property
    def resets(self) -> int:
        """Times the state was cleared because a camera's stamps went backwards."""
        return self._resets

    @property
    def pending(self) -> int:
        """Frames waiting for their set (at most one per camera)."""
        with self._lock:
            return sum(slot is not None for slot in self._pending)

    @property
    def last_stamp_ns(self) -> int | None:
        """Reference stamp of the last emitted set since the last reset (None: none yet)."""
        with self._lock:
            return None if self._last_used is None else self._last_used[0]

    # ------------------------------------------------------------------ operations

    def set_slop_ns(self, slop_ns: int) -> None:
        """Changes the slop for the sets still to come (runtime reconfiguration; thread-safe).

        Pending frames are kept: a wider slop may complete a set with the next frame offered.

        Raises:
            TypeError: non-integer ``slop_ns``.
            ValueError: negative ``slop_ns``.
        """
        slop = _as_int(slop_ns, "slop_ns")
        if slop < 0:
            raise ValueError(f"slop_ns must be >= 0, got {slop}")
        with self._lock:  # `_try_emit` reads it under the same lock: no set sees half a change
            self.slop_ns = slop

    def reset(self) -> None:
        """Forget all pending frames and the last emitted set (counters are kept)."""
        with self._lock:
            self._clear()

    def forget_camera(self, camera_index: int) -> None:
        """Forget one camera's pending frame and last stamp, keeping the others' state: for a
        camera whose slots the caller filled with stand-in frames (stamped like the other cameras)
        and whose own frames, stamped by its own clock, now return. Its stamps then start a new
        history instead of looking like a time jump that would clear every camera (`resets`);
        its frames not newer than its stand-in in the last emitted set are still `stale`.

        Raises:
            IndexError: ``camera_index`` outside ``0 .. camera_count - 1``.
        """
        index = _as_int(camera_index, "camera_index")
        if not 0 <= index < self.camera_count:
            raise IndexError(f"camera_index must be in 0..{self.camera_count - 1}, got {index}")
        with self._lock:
            self._pending[index] = None
            self._last_seen[index] = None

    def _clear(self) -> None:
        self._pending = [None] * self.camera_count
        self._last_seen = [None] * self.camera_count
        self._last_used = None

    def add(self, camera_index: int, stamp_ns: int, frame: T) -> SyncedSet[T] | None:
        """Offer camera ``camera_index``'s frame stamped ``stamp_ns``; returns a set when one completes.

        Raises:
            IndexError: ``camera_index`` outside ``0 .. camera_count - 1``.
            TypeError: non-integer index or stamp.
        """
        index = _as_int(camera_index, "camera_index")
        stamp = _as_int(stamp_ns, "stamp_ns")
        if not 0 <= index < self.camera_count:
            raise IndexError(f"camera_index must be in 0..{self.camera_count - 1}, got {index}")
        with self._lock:
            previous = self._last_seen[index]
            # strictly older: a repeated stamp is a duplicate (counted stale below), not a time jump
            if previous is not None and stamp < previous:
                self._resets += 1
                self._clear()
            self._last_seen[index] = stamp
            if self._last_used is not None and stamp <= self._last_used[index]:
                self._stale += 1
                return None
            if self._pending[index] is not None:
                self._replaced += 1
            self._pending[index] = (stamp, frame)
            return self._try_emit()

    def _try_emit(self) -> SyncedSet[T] | None:
        pending = self._pending
        stamps: list[int] = []
        frames: list[T] = []
        for slot in pending:
            if slot is None:
                return None
            stamps.append(slot[0])
            frames.append(slot[1])
        if max(stamps) - min(stamps) > self.slop_ns:
            return None
        self._pending = [None] * self.camera_count
        self._last_used = stamps
        self._emitted += 1
        return SyncedSet(stamps[0], tuple(frames), tuple(stamps))
