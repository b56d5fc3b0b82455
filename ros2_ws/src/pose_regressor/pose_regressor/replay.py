"""`pose-regressor replay`: publish a bag's messages over ROS 2 with their recorded timing.

The stand-in for `ros2 bag play` where rosbag2 is not installed. Messages are read with
`rosbags`, deserialized from their raw CDR by rclpy (a corrupt message is skipped and counted)
and published at their recorded pace scaled by `rate`; with `clock`, `/clock` follows the
bag's time (for `use_sim_time`). With `log`, every published message's header stamp,
publish time (CLOCK_MONOTONIC, ns) and loop offset are written as JSON lines, which
`pose-regressor evaluate` uses to measure end-to-end latency and to match looped stamps back to
the bag's ground truth. With `loop`, each pass shifts the stamps forward by the bag's length
(plus 0.1 s) so that they never go backwards.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.rosbag2 import Reader
from rosgraph_msgs.msg import Clock

from pose_regressor.messages import ns_from_time, time_from_ns

CLOCK_PERIOD_NS = 25_000_000  # /clock at 40 Hz between messages, like ros2 bag play
LOOP_GAP_NS = 100_000_000  # bag time (and, scaled by the rate, wall time) between two loops


class ReplayError(ValueError):
    """The bag cannot be replayed as asked (missing, unknown topics or types)."""


@dataclass
class ReplayStats:
    published: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    loops: int = 0
    seconds: float = 0.0


def message_class(msgtype: str) -> Any:
    """The rclpy class of a ROS type name such as `sensor_msgs/msg/Image`."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise ReplayError(f"message type {msgtype} is not available in this ROS installation") from exc


def _wait_for_subscribers(publishers: list[Any], timeout: float) -> None:
    """Waits until every publisher has a subscriber (or `timeout` s), so the first messages are not lost
    to DDS discovery; a topic nobody listens to just waits out the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(p.get_subscription_count() > 0 for p in publishers):
        time.sleep(0.02)
    time.sleep(0.5)  # matched publishers may still be completing the handshake on the reader side


def replay(
    bag: Path,
    rate: float = 1.0,
    loop: bool = False,
    clock: bool = False,
    topics: Sequence[str] | None = None,
    duration: float | None = None,
    start_delay: float = 3.0,
    log: IO[str] | None = None,
    node: Node | None = None,
) -> ReplayStats:
    """Publishes the bag (rclpy must be initialized). Returns counts; stops after `duration` s if given."""
    if rate <= 0:
        raise ReplayError(f"rate must be positive, got {rate}")
    if not Path(bag).exists():
        raise ReplayError(f"bag {bag} does not exist")
    own_node = node is None
    node = node or rclpy.create_node("pose_regressor_replay")
    stats = ReplayStats()
    wall_start = time.monotonic()
    try:
        with Reader(bag) as reader:
            available = {c.topic: c for c in reader.connections}
            wanted = list(topics) if topics else sorted(available)
            missing = [t for t in wanted if t not in available]
            if missing:
                raise ReplayError(f"topics {missing} are not in {bag}; it has {', '.join(sorted(available))}")
            connections = [available[t] for t in wanted]
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            classes = {c.topic: message_class(c.msgtype) for c in connections}
            publishers = {topic: node.create_publisher(cls, topic, qos) for topic, cls in classes.items()}
            clock_pub = node.create_publisher(Clock, "/clock", 10) if clock else None
            _wait_for_subscribers(list(publishers.values()), start_delay)
            started = time.monotonic()
            deadline = started + duration if duration is not None else None
            offset_ns = 0
            while True:
                first_ns: int | None = None
                last_ns = 0
                base = time.monotonic_ns()
                next_clock = 0
                for connection, log_ns, raw in reader.messages(connections=connections):
                    if first_ns is None:
                        # The clock starts at the first message read, not before the reader's seek
                        # (tens of ms on each loop), which would publish the first sets in a burst.
                        first_ns, base = log_ns, time.monotonic_ns()
                    due = base + round((log_ns - first_ns) / rate)
                    while True:
                        now = time.monotonic_ns()
                        if clock_pub is not None and now >= next_clock:
                            sim = first_ns + round((now - base) * rate) + offset_ns
                            clock_pub.publish(Clock(clock=time_from_ns(min(sim, log_ns + offset_ns))))
                            next_clock = now + CLOCK_PERIOD_NS
                        if now >= due:
                            break
                        time.sleep(min((due - now) / 1e9, CLOCK_PERIOD_NS / 1e9))
                    if deadline is not None and time.monotonic() >= deadline:
                        return stats
                    try:
                        msg = deserialize_message(bytes(raw), classes[connection.topic])
                    except Exception:  # a corrupt record must not end the replay
                        stats.skipped += 1
                        continue
                    if offset_ns and hasattr(msg, "header"):
                        msg.header.stamp = time_from_ns(ns_from_time(msg.header.stamp) + offset_ns)
                    publishers[connection.topic].publish(msg)
                    stats.published[connection.topic] = stats.published.get(connection.topic, 0) + 1
                    if log is not None and hasattr(msg, "header"):
                        record = {
                            "topic": connection.topic,
                            "stamp_ns": ns_from_time(msg.header.stamp),
                            "published_ns": time.monotonic_ns(),
                            "offset_ns": offset_ns,  # added to the bag's stamps in this loop
                        }
                        log.write(json.dumps(record) + "\n")
                    last_ns = log_ns
                if not loop or first_ns is None:
                    return stats
                stats.loops += 1
                # Each loop continues the bag's time so stamps never go backwards, and starts one
                # gap later in wall time too: without the pause, the next loop's first set would
                # follow the last one at once and the node would see two sets in a burst.
                offset_ns += last_ns - first_ns + LOOP_GAP_NS
                resume = base + round((last_ns - first_ns + LOOP_GAP_NS) / rate)
                time.sleep(max(0.0, (resume - time.monotonic_ns()) / 1e9))
    finally:
        stats.seconds = time.monotonic() - wall_start
        if own_node:
            node.destroy_node()
