"""When to send an initial pose to Nav2's AMCL (ROS-free policy, the node does the publishing).

AMCL subscribes to `initialpose` with the system-default QoS: reliable and *volatile*, so a
message published before AMCL was up is never delivered to it (transient-local durability on
our side would not help a volatile reader). Republishing at a fixed rate would not do either:
every `initialpose` makes AMCL throw its particle cloud away and start again.

So the latest confident pose is sent
* once, with the first confident pose (to whoever listens then), and
* again whenever the number of matched subscribers grows (an AMCL started later, or restarted),
  at the first check after it appeared and once more `repeat_after_s` later, because DDS
  matching is not symmetric in time: the writer may see the reader a moment before the reader
  accepts the writer's samples.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class InitialPosePolicy:
    repeat_after_s: float = 1.0  # a pose sent at discovery can be lost while the reliable handshake ends
    _sent_first: bool = False
    _subscribers: int = 0
    _repeat_at: float | None = None

    def on_pose(self, confident: bool) -> bool:
        """A new pose: True if it must be sent now (the first confident one)."""
        if confident and not self._sent_first:
            self._sent_first = True
            return True
        return False

    def on_check(self, subscribers: int, now_s: float, have_pose: bool) -> bool:
        """A periodic check with the current matched-subscriber count: True to send the latest
        confident pose now."""
        grew = subscribers > self._subscribers
        self._subscribers = subscribers
        if not have_pose:
            return False
        if grew:
            self._repeat_at = now_s + self.repeat_after_s
            return True
        if self._repeat_at is not None and now_s >= self._repeat_at:
            self._repeat_at = None
            return True
        return False

    def reset(self) -> None:
        """Forget what was sent (a new configure may load another map's model)."""
        self._sent_first = False
        self._repeat_at = None
